# A stack reading a variable crane.toml does not declare is told the nearest declared one.
# crane.toml: [stacks.main.vars]
# crane.toml: web_count = { type = "int", default = 1 }
# expect: stack variable 'web_cont' is not declared in crane.toml for this stack; did you mean 'web_count'?
# expect-line: 8
from crane_iac import variable

n = variable("web_cont")
