"""The `vallum` command (typer). One module per area registers its commands on the main app.

May import anything in vallum; nothing imports the CLI.
"""
