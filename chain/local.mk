# chain/: backing-name resolution, chain opening, the guest view over a chain.
noinst_HEADERS += chain/chain.h
