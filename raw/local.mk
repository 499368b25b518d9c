# raw/: the raw format driver.
