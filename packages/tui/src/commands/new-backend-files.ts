/**
 * The files `tdpemu new-backend` writes: a TypeScript package of its own, outside the workspace,
 * typed against the SDK of the checkout it was made from (`paths` in its tsconfig, to that
 * SDK's `dist/index.d.ts`) and run by that checkout's `tdpemu`, which links its imports of the
 * SDK to its own instance. It needs npm and TypeScript, nothing from the workspace's pnpm.
 */

export interface ScaffoldPaths {
  /** The backend's name, as registered. */
  name: string;
  /** The SDK's type declarations in the checkout. */
  sdkTypes: string;
  /** The checkout's bundled `tdpemu` command. */
  tdpemu: string;
}

/** The class name for `name`: "my-tech" → "MyTechBackend". */
export function className(name: string): string {
  return `${name
    .split(/[-_]/)
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1))
    .join("")}Backend`;
}

export function scaffoldFiles(p: ScaffoldPaths): Record<string, string> {
  const cls = className(p.name);
  return {
    "package.json": `${JSON.stringify(
      {
        name: `tdpemu-backend-${p.name}`,
        version: "0.1.0",
        private: true,
        description: `The '${p.name}' backend for tdpemu`,
        type: "module",
        main: "dist/index.js",
        scripts: { build: "tsc -p .", test: "tsc -p . && node --test test/" },
        devDependencies: { typescript: "5.9.3" },
        tdpemu: { sdk: p.sdkTypes, command: p.tdpemu },
      },
      null,
      2,
    )}\n`,
    "tsconfig.json": `${JSON.stringify(
      {
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          outDir: "dist",
          rootDir: "src",
          declaration: false,
          skipLibCheck: true,
          types: [],
          // The SDK of the tdpemu checkout this package was made from: its types at build time;
          // at run time that checkout's tdpemu links the import to its own copy.
          paths: { "@tdpemu/backend-sdk": [p.sdkTypes] },
        },
        include: ["src"],
      },
      null,
      2,
    )}\n`,
    ".gitignore": "node_modules/\ndist/\n",
    "src/index.ts": indexTs(p.name, cls),
    [`scenarios/${p.name}-demo.yaml`]: demoScenario(p.name),
    [`scenarios/${p.name}-race.yaml`]: raceScenario(p.name),
    "test/scenarios.test.mjs": testMjs(p.tdpemu),
    "README.md": readme(p),
  };
}

function indexTs(name: string, cls: string): string {
  return `/**
 * The '${name}' backend for tdpemu: a table of optional hooks the core calls at fixed points of
 * KVM's TDP MMU. Every hook is here with its contract; the ones this starting point does not
 * need are commented out. The contract in full: docs/writing-a-backend.md in the tdpemu
 * checkout, and the \`Backend\` type the SDK exports.
 *
 * As made, the backend runs every example scenario: private memory comes from guest_memfd, the
 * hardware checks nothing, and each first use of a private page is counted as a call.
 */
import {
  ACCESS_OK, BACKEND, CallCounts, emptyBackendStats,
  type Backend, type BackendRegistration, type BackendStats, type BackendVm, type MirrorView, type WalkedSpte,
} from "@tdpemu/backend-sdk";

const PREPARE = 0;
const INVALIDATE = 1;

export class ${cls} implements Backend {
  readonly name = "${name}";
  readonly description = "${name}: a new confidential-VM model";
  /** Private faults go to a mirror root whose changes this backend propagates (TDX, CCA). */
  readonly usesMirrorRoot = false;
  /** The VM has private memory: guest_memfd backing and private memory attributes. */
  readonly hasPrivateMemory = true;
  /** The architectural calls the backend counts, by name (\`stats().calls\`). */
  private readonly calls = new CallCounts(["PREPARE", "INVALIDATE"]);

  /** Once, when the VM is made, before any other hook. */
  init(_vm: BackendVm): void {}

  /** Whether a guest access at \`gpa\` is private: the shared bit (TDX), the C-bit (SEV). */
  classifyFault(_vm: BackendVm, _gpa: number, privateAccess: boolean): boolean {
    return privateAccess;
  }

  /** The first use of a guest_memfd page, under its folio lock, before mmu_lock: 0, or a negative errno to retry. */
  gmemPrepare(_vm: BackendVm, _gfn: number, _pfn: number): number {
    this.calls.add(PREPARE);
    return 0;
  }

  /** guest_memfd gives [pfn, pfn + npages) back: a conversion to shared, a hole punched, the teardown. */
  gmemInvalidate(_vm: BackendVm, _pfn: number, npages: number): void {
    this.calls.addMany(INVALIDATE, npages);
  }

  /**
   * The hardware's check after the core's walk of the direct root found \`pfn\` at \`level\`:
   * ACCESS_OK, ACCESS_GUEST_EXCEPTION (an exception in the guest) or ACCESS_FAULT_PRESENT (a
   * fault KVM must handle).
   */
  checkTranslation(_vm: BackendVm, _vcpu: number, _gpa: number, _write: boolean, _privateAccess: boolean, _pfn: number, _level: number): number {
    return ACCESS_OK;
  }

  /** The backend's own invariants, checked between steps: a list of { check, message }. */
  checkInvariants(_vm: BackendVm, _mirror: MirrorView): { check: string; message: string }[] {
    return [];
  }

  /** What the terminal UI shows beside each entry of a walk ("" for nothing). */
  describeEntry(_vm: BackendVm, _root: "mirror" | "direct", _gfn: number, _level: number, spte: WalkedSpte): string {
    return spte.leaf ? "${name}" : "";
  }

  /** Calls by name, calls that met contention (busy), failures by error name. */
  stats(): BackendStats {
    return { ...emptyBackendStats(), calls: this.calls.record() };
  }

  // ---------------------------------------------------------------- the rest of the table
  //
  // With \`usesMirrorRoot = true\`, the core needs checkGuestAccess and the four mirror hooks:
  //
  // /** A mirror table is allocated: the handle of the page handed to the secure side. */
  // allocExternalSpt(vm: BackendVm): number { ... }
  // /** That page goes back to the host (never linked, or freed with its table). */
  // releaseExternalSpt(vm: BackendVm, externalSpt: number): void { ... }
  // /** A secure table the backend made itself where a mirror table is about to go, or -1. */
  // adoptExternalSpt(vm: BackendVm, gfn: number, level: Level): number { return -1; }
  // /** A mirror table becomes present, under the read mmu_lock, the entry frozen: a status. */
  // linkExternalSpt(vm: BackendVm, gfn: number, level: Level, externalSpt: number): number { ... }
  // /** A mirror leaf becomes present, under the read mmu_lock, the entry frozen: a status. */
  // setExternalSpte(vm: BackendVm, gfn: number, level: Level, pfn: number): number { ... }
  // /** A mirror leaf is zapped under the write mmu_lock; flush the TLB yourself: a status or a step machine. */
  // removeExternalSpte(vm: BackendVm, gfn: number, level: Level, pfn: number): number | StepMachine { ... }
  // /** A mirror huge leaf becomes a table of smaller ones, under the write mmu_lock. */
  // splitExternalSpte(vm: BackendVm, gfn: number, level: Level, externalSpt: number): number | StepMachine { ... }
  // /** Recovery offers 512 contiguous leaves for one huge leaf: 0 merged, -11 refused. */
  // promoteExternalSpt(vm: BackendVm, gfn: number, level: Level, externalSpt: number): number | StepMachine { ... }
  // /** A mirror table is freed; a failure leaks the page, which the core counts. */
  // freeExternalSpt(vm: BackendVm, gfn: number, level: Level, externalSpt: number): number { ... }
  // /** The hardware's part of an access for GPAs it walks itself: ACCESS_*, or -1 to let the core walk. */
  // checkGuestAccess(vm: BackendVm, vcpu: number, gpa: number, write: boolean, privateAccess: boolean): number { ... }
  //
  // Any backend may also have:
  //
  // /** GFN bits that select the direct (shared) root; 0 if none. */
  // gfnDirectBits(vm: BackendVm): number { ... }
  // /** The largest level a private GFN may be mapped at: 1 (4K), 2 (2M) or 3 (1G). */
  // maxMappingLevel(vm: BackendVm, gfn: number, pfn: number): Level { ... }
  // /** A conversion changed [gfn, gfn + npages), under the write mmu_lock; vcpu asked for it, or -1. */
  // memoryAttributesChanged(vm: BackendVm, gfn: number, npages: number, toPrivate: boolean, vcpu: number): void { ... }
  // /** An entry of a direct root changed what it maps (for a secure side that holds shared mappings too). */
  // directSpteChanged(vm: BackendVm, gfn: number, level: Level, oldPfn: number, newPfn: number, flags: number): void { ... }
  // /** The guest accepts a private page of \`level\`: ACCESS_OK, ACCESS_FAULT (map it first) or ACCESS_GUEST_EXCEPTION. */
  // guestAccept(vm: BackendVm, vcpu: number, gpa: number, npt: { pfn: number; level: number } | null, level: Level): number { ... }
  // /** The level the guest accepted at after an ACCESS_FAULT accept, or 0. */
  // guestAcceptLevel(vm: BackendVm, vcpu: number, gfn: number): number { ... }
  // /** The guest gives up a private page before it becomes shared (PVALIDATE with validate clear). */
  // guestRescind(vm: BackendVm, vcpu: number, gpa: number, npt: { pfn: number; level: number } | null, level: Level): number { ... }
  // /** The guest asks the host to convert a range (MapGPA, a page-state change): ACCESS_OK or ACCESS_GUEST_EXCEPTION. */
  // guestMapGpa(vm: BackendVm, vcpu: number, gfn: number, npages: number, toPrivate: boolean): number { ... }
  // /** After KVM handled a fault the hardware reported: a GFN range to zap so it re-faults, or null. */
  // faultFixup(vm: BackendVm, vcpu: number, gpa: number): { gfn: number; npages: number } | null { ... }
  // /** The populate ioctl's own checks, then each page's initial content (measured or not), then finalize: statuses. */
  // canPopulate(vm: BackendVm): number { ... }
  // /** May KVM_PRE_FAULT_MEMORY run yet (kvm->arch.pre_fault_allowed)? Absent: always. */
  // preFaultAllowed(vm: BackendVm): boolean { ... }
  // populate(vm: BackendVm, gfn: number, pfn: number, measure: boolean): number { ... }
  // finalize(vm: BackendVm): number { ... }
  // /** Host ops of the backend's own (\`${name}.<op>\` in a scenario's host program), and how to run one. */
  // hostOps = { ... };
  // runHostOp(vm: BackendVm, name: string, args: Readonly<Record<string, number | string | boolean>>): number { ... }
  // /** The VMM ends the VM before destroying it; teardown before the roots go; destroy after. */
  // terminate(vm: BackendVm): number { ... }
  // teardown(vm: BackendVm): void { ... }
  // destroy(vm: BackendVm): void { ... }
  // /** A vCPU's TLB flush at entry; a remote flush's IPI; a violation exit. */
  // flushTlb(vm: BackendVm, vcpu: number): void { ... }
  // kickVcpu(vm: BackendVm, vcpu: number): void { ... }
  // vcpuExit(vm: BackendVm, vcpu: number): void { ... }
  // /** Fault injection (\`inject:\` in a scenario) and a malicious host's raw calls (\`op: raw\`). */
  // injectFault(vm: BackendVm, fault: FaultSpec): void { ... }
  // rawCall(vm: BackendVm, call: string, args: RawCallArgs): { status: string; detail: string } { ... }
  // /** Why the last failing hook failed, in the backend's words. */
  // lastError(): string { ... }
  // /** The UI: a walk's title, a GPA map cell's class, lines for the stats pane; the report's view of a guest page. */
  // walkTitle(vm: BackendVm, root: "mirror" | "direct"): string { ... }
  // mapCell(vm: BackendVm, gfn: number, level: number): string | null { ... }
  // extraStats(vm: BackendVm): [string, string][] { ... }
  // guestPage(vm: BackendVm, gfn: number, pfn: number): number { ... }
  // /** Set \`recordsOwnAccesses = true\` only if every hook records what it touches (resourceId); else the core records each hook whole. */
  // auditState(vm: BackendVm, out: Map<number, string | number>): void { ... }
}

export const registration: BackendRegistration = {
  name: "${name}",
  description: "${name}: a new confidential-VM model",
  register(c) {
    c.register(BACKEND, { useClass: ${cls} });
  },
};

export default registration;
`;
}

function demoScenario(name: string): string {
  return `# A first workload for the ${name} backend: private pages faulted in, some made shared and used
# through the shared side, then back. The README's first command runs it.
name: ${name}-demo
vm: { memory: 64MiB, gpaw: 48, vcpus: 2 }
backend: ../dist/index.js
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: access, gpa: 0x0, count: 16, write: true }
    - { op: convert, gpa: 0x0, size: 64KiB, to: shared }
    - { op: access, gpa: 0x0, count: 16, shared: true }
    - { op: convert, gpa: 0x0, size: 64KiB, to: private }
  - - { op: access, gpa: 0x100000, count: 16 }
`;
}

function raceScenario(name: string): string {
  return `# Two vCPUs fault pages under the same table: \`tdpemu explore\` runs every interleaving.
name: ${name}-race
vm: { memory: 4MiB, gpaw: 48, vcpus: 2 }
backend: ../dist/index.js
vcpus:
  - - { op: access, gpa: 0x0, write: true }
  - - { op: access, gpa: 0x1000, write: true }
`;
}

function testMjs(tdpemu: string): string {
  return `// Runs every example scenario of this package on its backend through the tdpemu command of
// the checkout it was made from, and explores the race scenario's interleavings.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const TDPEMU = ${JSON.stringify(tdpemu)};
const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const plugin = here("../dist/index.js");

function tdpemu(...args) {
  const r = spawnSync(process.execPath, [TDPEMU, ...args, "--plugin", plugin, "--strict-plugin"], { encoding: "utf8" });
  return { code: r.status, out: r.stdout + r.stderr };
}

for (const f of readdirSync(here("../scenarios/")).filter((f) => f.endsWith(".yaml"))) {
  test(\`\${f} runs without a violation\`, () => {
    const r = tdpemu("run", here(\`../scenarios/\${f}\`));
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /no violations/);
  });
}

test("every interleaving of the race is explored without a violation", () => {
  const race = readdirSync(here("../scenarios/")).find((f) => f.endsWith("-race.yaml"));
  const r = tdpemu("explore", here(\`../scenarios/\${race}\`));
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /the space is exhausted/);
});
`;
}

function readme(p: ScaffoldPaths): string {
  return `# The '${p.name}' backend for tdpemu

\`\`\`sh
npm install && npm run build && node ${p.tdpemu} run scenarios/${p.name}-demo.yaml --plugin dist/index.js
npm test
\`\`\`

The first builds the backend (npm installs TypeScript; the types of \`@tdpemu/backend-sdk\` come
from the tdpemu checkout this folder was made from, \`${p.sdkTypes}\`) and runs the demo scenario
on it with that checkout's \`tdpemu\`. The second runs every scenario in \`scenarios/\` on it and
explores the race scenario's interleavings.

\`src/index.ts\` holds the backend: a table of optional hooks, every one listed with its
contract, the ones not needed yet commented out. Other commands take the backend the same way:

\`\`\`sh
node ${p.tdpemu} explore scenarios/${p.name}-race.yaml --plugin dist/index.js
node ${p.tdpemu} compare scenarios/${p.name}-demo.yaml --plugin dist/index.js
node ${p.tdpemu} tui scenarios/${p.name}-demo.yaml --plugin dist/index.js
\`\`\`

The hooks' contracts in full are in the checkout's \`docs/writing-a-backend.md\`.
`;
}
