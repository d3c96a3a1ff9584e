#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, xbctl developers
# BSD 2-Clause License (see LICENSE or https://opensource.org/licenses/BSD-2-Clause)
# SPDX-License-Identifier: BSD-2-Clause

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: balloon_info
short_description: Read the memory balloon nodes of a Xen domain, or of every domain
version_added: "0.1.0"
description:
  - Reads a domain's current, target, min, max and xen-max through xbctl's Python API
    (the read document of C(xbctl --json)), or with no O(domain) every visible domain
    (the list document of C(xbctl --json list)).
author:
  - xbctl developers (@xbctl)
requirements:
  - xbctl (the Python package) for the Python interpreter on the managed host
options:
  domain:
    description:
      - The domain's name or id; unset, every domain is listed.
    type: str
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
    description: Reads only, in check mode as otherwise.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to show.
"""

EXAMPLES = r"""
- name: Gather every domain's balloon
  xbctl.xen.balloon_info:
  register: balloons

- name: Show web's target in KiB
  ansible.builtin.debug:
    msg: "{{ (balloons.domains | selectattr('name', '==', 'web') | first).nodes.target.value_kib }}"
"""

RETURN = r"""
read:
  description: The read document of C(xbctl --json) for O(domain).
  returned: when O(domain) is given
  type: dict
domains:
  description:
    - Every domain's entry of the list document of C(xbctl --json list).
    - Each entry's C(has_driver) is V(true) (a balloon driver says it acts on target), V(false)
      (the domain says it has none) or V(null) (unknown, as for every Linux guest); C(driver)
      says the same as V(yes), V(no) or V(unknown).
  returned: when O(domain) is not given
  type: list
  elements: dict
transport:
  description: The transport that answered, V(sim) or V(xenstore).
  returned: success
  type: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from xbctl.api import Xbctl, XbctlError
except ImportError:
    HAS_XBCTL = False
    XBCTL_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_XBCTL = True
    XBCTL_IMPORT_ERROR = None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            domain=dict(type="str"),
            transport=dict(type="str", choices=["sim", "xenstore"]),
            sim_state=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    if not HAS_XBCTL:
        module.fail_json(msg=missing_required_lib("xbctl"), exception=XBCTL_IMPORT_ERROR)
    params = module.params
    try:
        with Xbctl(params["transport"], params["sim_state"]) as xb:
            if params["domain"] is not None:
                result = dict(read=xb.read(params["domain"]).to_dict())
            else:
                result = dict(domains=xb.list().to_dict()["domains"])
            result["transport"] = xb.transport_name
    except XbctlError as exc:
        module.fail_json(msg="xbctl: %s" % exc.message, exit_status=int(exc.status))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
