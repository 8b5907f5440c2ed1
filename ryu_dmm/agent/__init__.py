"""The MAAR agent: a lightweight process running one ``MaarCore`` (``ryu-dmm-maar``)."""
