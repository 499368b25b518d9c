# chain/: backing-name resolution, chain opening, the guest view over a chain.
noinst_HEADERS += chain/chain.h
libqchain_internal_la_SOURCES += chain/resolve.c chain/chain.c chain/status.c
