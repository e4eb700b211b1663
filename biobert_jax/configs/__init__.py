"""Config helpers owned by the library: dotted-key overrides (`overrides`)."""
