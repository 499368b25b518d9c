# lib/: public API glue, errors, I/O backends, jobs.
libqchain_internal_la_SOURCES += \
	lib/errors.c \
	lib/io-file.c \
	lib/io-mem.c \
	lib/format.c \
	lib/image.c \
	lib/compare.c \
	lib/create.c \
	lib/check.c \
	lib/opts.c \
	lib/lock.c \
	lib/commit.c \
	lib/copy.c \
	lib/move.c \
	lib/fresh.c \
	lib/job.c \
	lib/throttle.c \
	lib/engine.c
noinst_HEADERS += lib/errors.h lib/io.h lib/format.h lib/internal.h lib/throttle.h lib/job.h lib/engine.h lib/lock.h lib/move.h lib/fresh.h
# pull and rebase: one job that fills an image, then switches its backing.
libqchain_internal_la_SOURCES += lib/retarget.c lib/retarget-plan.c lib/rebase.c lib/pull.c lib/backing-name.c
noinst_HEADERS += lib/retarget.h lib/backing-name.h lib/writeback.h
