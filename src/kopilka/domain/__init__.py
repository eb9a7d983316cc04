"""The ledger's domain: accounts, commands, operations and the rules. Pure: no I/O."""
