"""The subcommands of `larval`."""
