"""Baseline for a no-op plan on a XenServer pool: a plain script with the official SDK that logs in, reads every
record of the classes crane reads (one ``get_all_records`` each), counts them and logs out.

    XEN_PASSWORD=... python xenapi_read.py URL USERNAME CLASS [CLASS ...]
"""

import os
import sys

import XenAPI

url, username, classes = sys.argv[1], sys.argv[2], sys.argv[3:]
session = XenAPI.Session(url)
session.xenapi.login_with_password(username, os.environ["XEN_PASSWORD"], "2.0", "bench-baseline")
try:
    counts = {name: len(getattr(session.xenapi, name).get_all_records()) for name in classes}
finally:
    session.xenapi.session.logout()
print(counts)
