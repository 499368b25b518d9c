# qcow2/: the qcow2 format driver.
