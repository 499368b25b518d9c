# docs/: man pages.
dist_man_MANS += docs/qchain.1
dist_man_MANS += docs/libqchain.3
