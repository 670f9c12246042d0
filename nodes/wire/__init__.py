"""The bus vocabulary of every role, on one floor that imports no role: each role's
messages (`chain`, `manager`, `scheduler`, `worker`, `poster`, `sealing`), the task
types (`tasks`) and their params and results (`params`), sector and worker references
and selectors (`sectors`). A role imports the vocabulary of the roles it talks to from
here, never the other role. docs/architecture.md draws the floors."""
