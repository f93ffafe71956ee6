from vallum.cli.main import main

main()
