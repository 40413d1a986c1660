"""Integrations with serving engines that are not ours (see ../shared DESIGN.md, "Engines behind the nodes")."""
