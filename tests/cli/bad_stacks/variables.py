# Every missing or invalid variable, and every unknown --var, in one run: each names crane.toml's line and the fix.
# crane.toml: [stacks.main.vars]
# crane.toml: web_count = { type = "int" }
# crane.toml: memory = { type = "int", default = "lots" }
# crane.toml: autostart = { type = "bool", default = false }
# args: --var autostart=maybe --var web_cont=3
# expect: 4 problems with the stack's variables:
# expect: --var web_cont: not a variable of this stack in
# expect: did you mean web_count?
# expect: crane.toml:4: variable 'web_count' has no default; pass --var web_count=VALUE (int)
# expect: crane.toml:5: variable 'memory': the default 'lots' is a string, not an int; fix its default or pass --var memory=VALUE (int)
# expect: crane.toml:6: variable 'autostart': 'maybe' is not a bool (true/false), as given on the command line; pass --var autostart=VALUE (bool)
from crane_iac import VM, variable

VM("web", vcpus=1, memory_mib=variable("memory"), autostart=variable("autostart"))
