# examples/: programs using libqchain as an outside user would.  make check
# compiles them against the library in the build tree through pkg-config,
# with nothing but `pkg-config --cflags --libs qchain`: an uninstalled
# examples/qchain-uninstalled.pc shadows any installed qchain.pc, and
# tests/example.sh runs the result.
EXAMPLES_PC_DIR = $(abs_top_builddir)/examples
EXAMPLES_PKG_CONFIG = PKG_CONFIG_PATH="$(EXAMPLES_PC_DIR)$${PKG_CONFIG_PATH:+:$$PKG_CONFIG_PATH}" $(PKG_CONFIG)

# check_DATA is first set here: other makefiles should add to it with +=.
check_DATA = examples/inspect
TESTS += tests/example.sh
EXTRA_DIST += examples/inspect.c examples/qchain-uninstalled.pc.in \
	tests/example.sh
CLEANFILES += examples/inspect examples/qchain-uninstalled.pc \
	examples/qchain-uninstalled.pc-t

examples/qchain-uninstalled.pc: examples/qchain-uninstalled.pc.in Makefile
	$(AM_V_GEN)$(MKDIR_P) examples && sed \
	  -e 's|@abs_top_srcdir[@]|$(abs_top_srcdir)|g' \
	  -e 's|@abs_top_builddir[@]|$(abs_top_builddir)|g' \
	  -e 's|@PACKAGE_VERSION[@]|$(PACKAGE_VERSION)|g' \
	  -e 's|@PRIVATE_LIBS[@]|$(ZLIB_LIBS) $(ZSTD_LIBS) $(URING_LIBS)|g' \
	  $(srcdir)/examples/qchain-uninstalled.pc.in > $@-t && mv $@-t $@

# Without pkg-config there is nothing to build; tests/example.sh then skips.
examples/inspect: examples/inspect.c examples/qchain-uninstalled.pc libqchain.la
	$(AM_V_CCLD)if test -z "$(PKG_CONFIG)"; then \
	  echo "examples/inspect: pkg-config not found, not built"; rm -f $@; \
	else \
	  cflags=`$(EXAMPLES_PKG_CONFIG) --cflags qchain` && \
	  libs=`$(EXAMPLES_PKG_CONFIG) --libs qchain` && \
	  $(CC) $(CFLAGS) $(WARN_CFLAGS) $(SANITIZER_CFLAGS) $$cflags \
	    -o $@ $(srcdir)/examples/inspect.c $(LDFLAGS) $$libs; \
	fi
