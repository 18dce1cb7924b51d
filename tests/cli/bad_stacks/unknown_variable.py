# expect: stack variable 'replicas' is not declared in crane.toml
# expect-line: 5
from crane_iac import variable

n = variable("replicas")
