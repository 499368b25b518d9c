# qcow2/: the qcow2 format driver.
libqchain_internal_la_SOURCES += \
	qcow2/header.c \
	qcow2/l2.c \
	qcow2/l2-cache.c \
	qcow2/compress.c \
	qcow2/snapshot.c \
	qcow2/bitmap.c \
	qcow2/refcount.c \
	qcow2/alloc.c \
	qcow2/flush.c \
	qcow2/writer.c \
	qcow2/write.c \
	qcow2/compressed-write.c \
	qcow2/header-write.c \
	qcow2/resize.c \
	qcow2/create.c \
	qcow2/check.c \
	qcow2/u64map.c \
	qcow2/qcow2.c
noinst_HEADERS += qcow2/qcow2.h qcow2/u64map.h
