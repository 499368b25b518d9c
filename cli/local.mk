# cli/: the qchain command; it uses only the public qchain.h.
bin_PROGRAMS += cli/qchain
cli_qchain_SOURCES = \
	cli/cli.h \
	cli/main.c \
	cli/util.c \
	cli/json.c \
	cli/info.c \
	cli/map.c \
	cli/compare.c \
	cli/create.c \
	cli/check.c \
	cli/commit.c \
	cli/copy.c \
	cli/run.c \
	cli/rebase.c \
	cli/pull.c
cli_qchain_CPPFLAGS = -I$(top_srcdir)/lib
cli_qchain_LDADD = libqchain.la
