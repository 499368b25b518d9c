# docs/: man pages.
