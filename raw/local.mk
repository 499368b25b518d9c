# raw/: the raw format driver.
libqchain_internal_la_SOURCES += raw/raw.c
