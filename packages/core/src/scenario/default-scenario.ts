/**
 * The built-in default scenario: what `tdpemu` runs with no arguments. Two vCPUs accept and
 * fault memory in (private where the backend has private memory), one converts two pages to
 * shared and uses them through the shared alias, while the host zaps a range and ages memory,
 * so every kind of table change shows up.
 */
export const DEFAULT_SCENARIO_YAML = `# The built-in default scenario of tdpemu.
name: default
vm: { memory: 64MiB, gpaw: 48, vcpus: 2, hugepages: true }
backend: tdx
schedule: { mode: random, seed: 15 }
vcpus:
  - - { op: accept, gpa: 0x0, count: 16 }
    - { op: access, gpa: 0x0, count: 16, write: true }
    - { op: accept, gpa: 0x400000, count: 512 }
    - { op: access, gpa: 0x400000, count: 512 }
  - - { op: accept, gpa: 0x200000, count: 8 }
    - { op: access, gpa: 0x200000, count: 8, write: true }
    - { op: convert, gpa: 0x800000, size: 8KiB, to: shared }
    - { op: access, gpa: 0x800000, shared: true, write: true }
    - { op: access, gpa: 0x801000, shared: true }
host:
  - { op: zap, gpa: 0x200000, size: 2MiB }
  - { op: age, gpa: 0x0, size: 8MiB }
`;

export const DEFAULT_SCENARIO_SOURCE = "<built-in default>";
