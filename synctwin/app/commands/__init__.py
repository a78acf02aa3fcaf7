"""One module per subcommand: `add_arguments(parser)` and `run(args) -> exit status` (modules named
_like_this are helpers they share, not subcommands)."""
