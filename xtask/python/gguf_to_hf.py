import sys
sys.exit("converter not written yet")
