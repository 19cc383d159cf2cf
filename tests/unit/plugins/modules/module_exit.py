"""Running a module's main() in the test process: exit_json/fail_json raise ModuleExit instead of exiting the
process, and what the module passed to warn() is kept in the result's ``warnings``, as Ansible returns it."""
import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args


class ModuleExit(Exception):
    """How a module run ended: kind "exit" (exit_json) or "fail" (fail_json), and its result."""

    def __init__(self, kind, result):
        super().__init__(result.get("msg", ""))
        self.kind = kind
        self.result = result


def patch_exits(monkeypatch):
    """Make AnsibleModule.exit_json/fail_json raise ModuleExit and warn() record its text (for a test's fixture)."""
    def exit_json(self, **result):
        raise ModuleExit("exit", dict(result, warnings=list(self.__dict__.get("_test_warnings", []))))

    def fail_json(self, msg, **result):
        raise ModuleExit("fail", dict(result, msg=msg))

    monkeypatch.setattr(AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(AnsibleModule, "warn",
                        lambda self, text: self.__dict__.setdefault("_test_warnings", []).append(text))


def run_main(main, args):
    """The ModuleExit of main() run with module arguments `args` (patch_exits must be in effect)."""
    with patch_module_args(args), pytest.raises(ModuleExit) as exc:
        main()
    return exc.value
