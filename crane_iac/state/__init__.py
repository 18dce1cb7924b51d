"""State stores: the recorded resources of each stack, behind an interface chosen by URL."""
