# docs/: man pages.
dist_man_MANS += docs/qchain.1
