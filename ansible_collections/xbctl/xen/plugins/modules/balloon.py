#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: xbctl maintainers
# BSD-2-Clause (see the LICENSE of xbctl)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: balloon
short_description: Set the memory balloon nodes of a Xen domain
version_added: "0.1.0"
description:
  - Sets a domain's balloon target, its floor (min) and the hypervisor's limit (xen-max)
    through xbctl's Python API, as C(xbctl -d DOMAIN -w target=... min=... xen-max=...) would.
  - Every value is checked against the balloon driver's rules before anything is written;
    a value the driver would refuse fails the task with xbctl's message and changes nothing.
  - Modelled on M(ansible.posix.sysctl). Idempotent for absolute sizes; a relative target
    (V(+256M)) changes the target on every run.
author:
  - xbctl maintainers (@xbctl)
requirements:
  - xbctl (the Python package) for the Python interpreter on the managed host
options:
  domain:
    description:
      - The domain's name or id.
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
  wait:
    description:
      - Wait until the domain's current reservation reaches the target.
      - A wait that ends without reaching it fails the task (the write has happened).
    type: bool
    default: false
  timeout:
    description:
      - Give up O(wait) after this many seconds.
    type: float
  transport:
    description:
      - V(xenstore) for the host's Xenstore, V(sim) for xbctl's simulated host;
        unset, xbctl chooses as its CLI does.
    type: str
    choices: [sim, xenstore]
  sim_state:
    description:
      - The simulator's state file (with O(transport=sim)).
    type: path
attributes:
  check_mode:
    support: full
    description: Plans the write (a dry run) and reports what would change.
  diff_mode:
    support: full
    description: Shows each written node's value in KiB before and after.
"""

EXAMPLES = r"""
- name: Give web 512 MiB and keep it from going below 256 MiB
  xbctl.xen.balloon:
    domain: web
    target: 512M
    min: 256M
    wait: true
    timeout: 60
"""

RETURN = r"""
write:
  description: The write document of C(xbctl --json) (changes in KiB, dry_run, wait outcome).
  returned: success, and failure after the write happened
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
exit_status:
  description: The exit status xbctl's CLI would end with (1 refused, 2 bad value, 3 unavailable, 4 unknown, 5 not reached).
  returned: failure
  type: int
"""

import traceback
from dataclasses import replace

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from xbctl.api import Xbctl, XbctlError
except ImportError:
    HAS_XBCTL = False
    XBCTL_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_XBCTL = True
    XBCTL_IMPORT_ERROR = None

WRITABLE = (("target", "target"), ("min", "min"), ("xen_max", "xen-max"))


def _lines(nodes, keys):
    return "".join("%s: %d\n" % (nodes[key].name, nodes[key].value_kib) for key in keys)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            domain=dict(type="str", required=True),
            target=dict(type="str"),
            min=dict(type="str"),
            xen_max=dict(type="str"),
            wait=dict(type="bool", default=False),
            timeout=dict(type="float"),
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
    keys = list(values)
    result = dict(changed=False)
    try:
        with Xbctl(params["transport"], params["sim_state"], via="ansible") as xb:
            before = xb.read(params["domain"]).nodes
            plan = xb.apply(params["domain"], values, dry_run=True)
            write = plan
            if plan.changed and not module.check_mode:
                write = xb.apply(params["domain"], values, wait=params["wait"], timeout_s=params["timeout"])
            elif params["wait"] and "target" in values and not module.check_mode:
                # Unchanged, but maybe still on its way there: wait as asked, change nothing.
                wait = xb.wait(params["domain"], timeout_s=params["timeout"])
                write = replace(write, wait=wait)
            result["changed"] = write.changed
            document = write.to_dict()
            # A node already at its value is no change here (sysctl would print x -> x).
            document["changes"] = [c for c in document["changes"] if c["old_kib"] != c["new_kib"]]
            document["dry_run"] = module.check_mode
            result["write"] = document
            if module._diff:
                after = dict((c["node"], c["new_kib"]) for c in document["changes"])
                result["diff"] = dict(
                    before=_lines(before, keys),
                    after="".join(
                        "%s: %d\n" % (before[key].name, after.get(key, before[key].value_kib)) for key in keys
                    ),
                )
    except XbctlError as exc:
        result.update(msg="xbctl: %s" % exc.message, exit_status=int(exc.status))
        if exc.hint:
            result["hint"] = exc.hint
        module.fail_json(**result)
    wait = write.wait
    if wait is not None and not wait.reached:
        result.update(
            msg="xbctl: %s: target %d KiB not reached (current %d KiB): %s"
            % (write.domain.name, wait.target_kib, wait.current_kib, wait.reason),
            exit_status=5,
        )
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
