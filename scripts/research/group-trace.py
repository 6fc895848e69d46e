#!/usr/bin/env python3
"""Summarises one consumer group's requests from an erp-toolkit log written with
RUST_LOG=...,tansu_broker::coordinator=debug (NO_COLOR=1): one line per JoinGroup / SyncGroup /
Heartbeat / LeaveGroup request of the group, with the member, generation, outcome and leader.

Usage: group-trace.py LOG [GROUP]   (GROUP defaults to erp-toolkit-processor)
"""
import re
import signal
import sys
from collections import OrderedDict

log = sys.argv[1]
group = sys.argv[2] if len(sys.argv) > 2 else "erp-toolkit-processor"
req_re = re.compile(r'req\{id="([^"]+)"\}')
service_re = re.compile(r'serve\{self=(\w+)Service\}')
requests = OrderedDict()
with open(log, errors="replace") as f:
    for line in f:
        m = req_re.search(line)
        services = service_re.findall(line[:400])
        if not m or not services or services[-1] not in ("JoinGroup", "SyncGroup", "Heartbeat", "LeaveGroup"):
            continue
        rid, kind = m.group(1), services[-1]
        r = requests.setdefault(rid, {"kind": kind, "t": line[11:23], "lines": []})
        r["lines"].append(line)

signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def short(member):
    return member.replace(group + "-", "")[:8] if member else "-"


def find(pattern, lines, default=""):
    for line in lines:
        m = re.search(pattern, line)
        if m:
            return m.group(1)
    return default

for rid, r in requests.items():
    lines = r["lines"]
    if not any(f'group_id="{group}"' in l for l in lines):
        continue
    member = find(r' member_id="([^"]+)"', lines)
    gen = find(r' generation_id=(-?\d+)', lines)
    outcome = find(r'(?:join|sync)_outcome=(\w+)', lines, "-")
    detail = []
    if r["kind"] == "JoinGroup":
        metadata = find(r'member_metadata="(\w+)"', lines)
        if metadata:
            detail.append(f"member {metadata}")
        if any("join_follower_pause" in l or "sleep" in l for l in lines):
            detail.append("paused")
    if r["kind"] == "SyncGroup":
        sent = find(r'assignments=(Some\(\[.*?\]\)|None)', lines)
        detail.append(f"sent {sent.count('SyncGroupRequestAssignment')} assignment(s)")
        got = find(r'sync_assignment=(\w+)', lines)
        if got:
            detail.append(f"got assignment: {got}")
        leader = find(r'leader=Some\("([^"]+)"\)', lines)
        if leader:
            detail.append(f"leader is {short(leader)}")
    for l in lines:
        if "missed heartbeat" in l:
            detail.append(re.sub(r'.*administrator: ', '', l).strip().replace(group + "-", ""))
    print(f'{r["t"]} {r["kind"]:<10} member={short(member):<8} gen={gen:<3} outcome={outcome:<20} '
          + "; ".join(detail), flush=True)
