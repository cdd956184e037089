"""Channel plug-ins, one module per channel, registered in the `herald.channels` entry-point group."""
