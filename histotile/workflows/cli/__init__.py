"""The command line: the `histotile` group, its subcommands, console output, config files."""
