#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xbctl developers
# BSD 2-Clause License (see LICENSE or https://opensource.org/licenses/BSD-2-Clause)
# SPDX-License-Identifier: BSD-2-Clause

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: balloon
short_description: Set the memory balloon nodes of a Xen domain, now and for its next start
version_added: "0.1.0"
description:
  - Sets a domain's balloon target, its floor (min) and the hypervisor's limit (xen-max)
    through xbctl's Python API, as C(xbctl -d DOMAIN -w target=... min=... xen-max=...) would.
  - Every value is checked against the balloon driver's rules before anything is written;
    a value the driver would refuse fails the task with xbctl's message and changes nothing,
    neither the domain nor O(sysctl_file).
  - With O(persist=true) the values are also kept in a settings file (O(sysctl_file)), under the
    domain's C([DOMAIN]) section in the format of C(xbctl.conf(5)), so that C(xbctl --system) and
    the policy service (C(xbctl-policy.service)) apply them when the domain starts again.
  - Modelled on M(ansible.posix.sysctl). Idempotent for absolute sizes; a relative target
    (V(+256M)) changes the target on every run.
author:
  - xbctl developers (@xbctl)
requirements:
  - xbctl (the Python package) for the Python interpreter on the managed host
options:
  domain:
    description:
      - The domain's name or id.
      - With O(persist=true) it is also the name of the file's section, C([DOMAIN]); name
        the domain, since its id changes when it restarts.
    type: str
    required: true
  target:
    description:
      - The balloon target, a size as xbctl reads it (KiB without a unit; V(512M), V(2G), V(+64M)).
    type: str
  min:
    description:
      - The floor of the target (machdep.xen.balloon.min), a size as for O(target).
    type: str
  xen_max:
    description:
      - The hypervisor's limit for the domain (machdep.xen.balloon.xen-max), a size as for O(target).
    type: str
  state:
    description:
      - V(present) sets the values given (in O(sysctl_file) with O(persist=true)).
      - V(absent) removes the lines of the nodes given from the domain's section of
        O(sysctl_file) (their values are not used) and leaves the running domain as it is,
        as M(ansible.posix.sysctl) does. It needs O(persist=true).
    type: str
    choices: [present, absent]
    default: present
  persist:
    description:
      - Also keep the values in O(sysctl_file), one C(machdep.xen.balloon.NODE=VALUE) line each,
        under the domain's C([DOMAIN]) section, so that they outlive the domain's restart.
      - The file is replaced atomically, mode C(0644) (owned by the user the module runs as,
        root, as xbctl requires of its configuration files); missing directories are made C(0755).
        A warning says when C(xbctl --system) would not read it (another directory, or a
        file or directory someone other than root can change).
    type: bool
    default: false
  sysctl_file:
    description:
      - The settings file of O(persist). Unset, C(/etc/xbctl.d/ansible.conf) (below
        C($XBCTL_CONF_ROOT) when that is set, as xbctl reads it).
      - Only files whose names end in C(.conf) in C(/etc/xbctl.d), or C(/etc/xbctl.conf), are read
        by C(xbctl --system) and the policy service.
    type: path
  apply:
    description:
      - Write the values to the running domain now. V(false) with O(persist=true) only changes
        O(sysctl_file), and the values apply at the domain's next start (by the policy service) or
        at the next C(xbctl --system); the domain is not read, so it need not exist yet, and
        the values are checked only as sizes.
      - Ignored with O(state=absent), which never changes the running domain.
    type: bool
    default: true
  wait:
    description:
      - Wait until the domain's current reservation reaches the target.
      - A wait that ends without reaching it fails the task (the write has happened).
    type: bool
    default: false
  timeout:
    description:
      - Give up O(wait) after this many seconds (as M(ansible.builtin.wait_for), 300 by default).
      - A wait also ends, failing the task, when the driver says it cannot reach the target,
        or when the domain's memory has not moved for C($XBCTL_STALL_TIMEOUT) seconds (10).
    type: float
    default: 300
  transport:
    description:
      - V(xenstore) for the host's Xenstore, V(sim) for xbctl's simulated host;
        unset, xbctl chooses as its CLI does (a warning says when that is the simulator).
    type: str
    choices: [sim, xenstore]
  sim_state:
    description:
      - The simulator's state file (with O(transport=sim)).
    type: path
attributes:
  check_mode:
    support: full
    description: Plans the write (a dry run) and the new O(sysctl_file), and reports what would change.
  diff_mode:
    support: full
    description: Shows each written node's value in KiB before and after, and O(sysctl_file)'s lines before and after.
notes:
  - xbctl's warnings (a domain that says it has no balloon driver, values a guest published
    that were ignored, a simulated host) become Ansible warnings.
seealso:
  - module: ansible.posix.sysctl
  - module: xbctl.xen.balloon_info
"""

EXAMPLES = r"""
- name: Give web 512 MiB and keep it from going below 256 MiB
  xbctl.xen.balloon:
    domain: web
    target: 512M
    min: 256M
    wait: true
    timeout: 60

- name: Give web 1 GiB now and whenever it starts again
  xbctl.xen.balloon:
    domain: web
    target: 1G
    persist: true

- name: Give db a floor of 512 MiB from its next start on, leaving it alone now
  xbctl.xen.balloon:
    domain: db
    min: 512M
    persist: true
    apply: false
    sysctl_file: /etc/xbctl.d/50-db.conf

- name: Stop setting web's target when it starts
  xbctl.xen.balloon:
    domain: web
    target: 1G  # which node's line goes; the value is not used
    state: absent
    persist: true
"""

RETURN = r"""
write:
  description: The write document of C(xbctl --json) (changes in KiB, dry_run, wait outcome).
  returned: when the values are applied (O(apply=true), O(state=present)); also on a failure after the write happened
  type: dict
  sample:
    schema_version: 1
    kind: write
    transport: xenstore
    domain: {id: 1, name: web}
    dry_run: false
    changes: [{node: target, name: machdep.xen.balloon.target, old_kib: 786432, new_kib: 524288}]
    ignored: []
    warnings: []
    wait: null
sysctl_file:
  description: The settings file the values persist in.
  returned: with O(persist=true)
  type: str
  sample: /etc/xbctl.d/ansible.conf
file_changed:
  description: Whether O(sysctl_file) was (in check mode, would be) changed.
  returned: with O(persist=true)
  type: bool
exit_status:
  description: The exit status xbctl's CLI would end with (1 refused, 2 bad value, 3 unavailable, 4 unknown, 5 not reached).
  returned: failure
  type: int
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from xbctl.api import Xbctl, XbctlError
    from xbctl.conf_edit import (
        check_section_name, check_values, default_file, edit_settings, read_text, why_not_applied,
        write_configuration_file,
    )
except ImportError:
    HAS_XBCTL = False
    XBCTL_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_XBCTL = True
    XBCTL_IMPORT_ERROR = None

WRITABLE = (("target", "target"), ("min", "min"), ("xen_max", "xen-max"))
USAGE = 2  # xbctl's exit status for a bad value or usage


def _lines(nodes, keys):
    return "".join("%s: %d\n" % (nodes[key].name, nodes[key].value_kib) for key in keys)


def _fail(module, result, message, status, hint=None):
    result.update(msg=message, exit_status=int(status))
    if hint:
        result["hint"] = hint
    module.fail_json(**result)


def _plan_live(module, xb, params, values, diffs):
    """Plan VALUES on the domain (a refusal raises before anything is written); the plan and
    the domain's nodes before it."""
    before = xb.read(params["domain"]).nodes
    plan = xb.apply(params["domain"], values, dry_run=True)
    if module._diff:
        after = dict((c.node, c.new_kib) for c in plan.changes)
        keys = list(values)
        diffs.append(dict(
            before_header="domain %s" % params["domain"],
            after_header="domain %s" % params["domain"],
            before=_lines(before, keys),
            after="".join("%s: %d\n" % (before[key].name, after.get(key, before[key].value_kib)) for key in keys),
        ))
    return plan


def _write_live(module, xb, params, values, plan):
    """Write VALUES (planned as PLAN) unless check mode; the write result."""
    write = plan
    if plan.changed and not module.check_mode:
        write = xb.apply(params["domain"], values, wait=params["wait"], timeout_s=params["timeout"])
    elif params["wait"] and "target" in values and not module.check_mode:
        # Unchanged, but maybe still on its way there: wait as asked, change nothing.
        write = write.replace(wait=xb.wait(params["domain"], timeout_s=params["timeout"]))
    return write


def _document(module, write):
    document = write.to_dict()
    # A node already at its value is no change here (sysctl would print x -> x).
    document["changes"] = [c for c in document["changes"] if c["old_kib"] != c["new_kib"]]
    document["dry_run"] = module.check_mode
    return document


def main():
    module = AnsibleModule(
        argument_spec=dict(
            domain=dict(type="str", required=True),
            target=dict(type="str"),
            min=dict(type="str"),
            xen_max=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            persist=dict(type="bool", default=False),
            sysctl_file=dict(type="path"),
            apply=dict(type="bool", default=True),
            wait=dict(type="bool", default=False),
            timeout=dict(type="float", default=300),
            transport=dict(type="str", choices=["sim", "xenstore"]),
            sim_state=dict(type="path"),
        ),
        required_one_of=[("target", "min", "xen_max")],
        supports_check_mode=True,
    )
    if not HAS_XBCTL:
        module.fail_json(msg=missing_required_lib("xbctl"), exception=XBCTL_IMPORT_ERROR)
    params = module.params
    values = dict((key, params[param]) for param, key in WRITABLE if params[param] is not None)
    result = dict(changed=False)
    present = params["state"] == "present"
    if not present and not params["persist"]:
        _fail(module, result, "xbctl: state=absent removes lines from sysctl_file: it needs persist=true", USAGE)
    if present and not params["apply"] and not params["persist"]:
        _fail(module, result, "xbctl: apply=false without persist=true would change nothing", USAGE,
              hint="persist=true keeps the values for the domain's next start")
    if params["wait"] and not params["timeout"] > 0:
        _fail(module, result, "xbctl: timeout must be a positive number of seconds, not %s" % params["timeout"], USAGE)
    live = present and params["apply"]
    diffs = []
    write = None
    xb = None
    try:
        path = None
        if params["persist"]:
            check_section_name(params["domain"])
            path = params["sysctl_file"] or default_file()
            if present:
                check_values(values)  # as sizes: with apply=false the domain is not read
            old_text = read_text(path)
            edits = dict((key, value if present else None) for key, value in values.items())
            new_text = edit_settings(old_text, params["domain"], edits)
            result.update(sysctl_file=path, file_changed=new_text != old_text)
            if module._diff:
                diffs.append(dict(before_header=path, after_header=path, before=old_text, after=new_text))
        plan = None
        if live:
            xb = Xbctl(params["transport"], params["sim_state"], via="ansible")
            if xb.simulated_by_default:
                module.warn("xbctl: simulated host (no Xen here): no real domain is changed")
            plan = _plan_live(module, xb, params, values, diffs)
        # The file first: a setting that must survive is kept even if the write below fails.
        if path is not None and result["file_changed"] and not module.check_mode:
            write_configuration_file(path, new_text)
        if live:
            write = _write_live(module, xb, params, values, plan)
            result["write"] = _document(module, write)
            for warning in write.warnings:
                module.warn("xbctl: %s" % warning)
        if path is not None and os.path.exists(path):
            problem = why_not_applied(path)
            if problem:
                module.warn("xbctl: %s" % problem)
    except XbctlError as exc:
        _fail(module, result, "xbctl: %s" % exc.message, exc.status, exc.hint)
    finally:
        if xb is not None:
            xb.close()
    result["changed"] = bool(result.get("file_changed")) or (write is not None and write.changed)
    if diffs:
        result["diff"] = diffs
    wait = write.wait if write is not None else None
    if wait is not None and not wait.reached:
        _fail(module, result, "xbctl: %s: target %d KiB not reached (current %d KiB): %s"
              % (write.domain.name, wait.target_kib, wait.current_kib, wait.reason), 5)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
