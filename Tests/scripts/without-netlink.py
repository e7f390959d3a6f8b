#!/usr/bin/python3
"""Runs a command with socket(AF_NETLINK, ...) refused with EAFNOSUPPORT, as systemd's
RestrictAddressFamilies= without AF_NETLINK refuses it (Debian's python3-seccomp).

Usage: without-netlink.py COMMAND [ARGUMENT ...]
"""
import errno
import os
import socket
import sys

import seccomp

if len(sys.argv) < 2:
    sys.exit(__doc__.strip())
rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
rules.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, socket.AF_NETLINK))
rules.load()
os.execvp(sys.argv[1], sys.argv[1:])
