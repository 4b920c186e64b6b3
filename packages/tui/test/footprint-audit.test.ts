/**
 * The footprint audit over every shipped scenario on every backend that accepts it: no step
 * changes shared state that its footprint does not record as written. Scenarios with more than
 * 4 MiB of guest memory are cut down to 4 MiB (ops past it dropped, ranges clamped): the audit
 * copies the whole shared state around every step, and a smaller guest runs the same code.
 */
import { resolve } from "node:path";
import { describe, expect, it, vi } from "vitest";
import {
  BLOCKED,
  Clock,
  ExecCtx,
  FootprintAudit,
  R_RCU,
  buildRun,
  explore,
  exploreScenario,
  loadScenario,
  parseScenarioText,
  type Op,
  type Scenario,
} from "@tdpemu/core/testing";
import { builtinRegistry } from "../src/registry.js";
import { shippedScenarioFiles, shrunk, unlessRefused } from "./shrunk-scenario.js";

const registry = builtinRegistry();

/**
 * Explores `scn` on `backend` with the audit on and one more task, "sneaky", whose second step
 * runs `tamper` (given the run): the first audit violation, if any.
 */
function auditWithSneaky(
  scn: Scenario,
  backend: string,
  tamper: (built: ReturnType<typeof buildRun>) => void,
) {
  const r = explore(
    () => {
      const built = buildRun(
        { ...scn, backend },
        { backend: registry.source(backend), interleave: true },
      );
      function* sneaky(): Op {
        yield;
        tamper(built);
        if (built.vm.dead) yield BLOCKED;
      }
      const tasks = [...built.tasks, { name: "sneaky", op: sneaky(), done: false }];
      return {
        tasks,
        clock: built.clock,
        setRecorder: () => {},
        check: (final) => built.check(final).violations,
        classify: () => null,
        stateVersion: built.checkVersion,
        audit: new FootprintAudit(built.vm, tasks, [], [built.finalized]),
      };
    },
    { audit: true },
  );
  return r.violation?.violations[0] ?? null;
}
/** A one-vCPU scenario `name` on `backend` whose vCPU runs the single op `op`. */
function oneOp(name: string, backend: string, op: string): Scenario {
  return parseScenarioText(
    `name: ${name}\nvm: { memory: 4MiB, vcpus: 1 }\nbackend: ${backend}\nvcpus:\n  - - ${op}\n`,
    `${name}.yaml`,
  );
}

const files = shippedScenarioFiles;

describe("the footprint audit", () => {
  for (const file of files) {
    it(`finds every change recorded in ${file}, on every backend that takes it`, () => {
      const scn = shrunk(loadScenario(resolve("scenarios", file)));
      let ran = 0;
      for (const backend of ["plain", "sev", "tdx", "cca"]) {
        // null: an op this backend refuses (dirty logging of private memory).
        const r = unlessRefused(() =>
          exploreScenario(scn, {
            backend: registry.source(backend),
            audit: true,
            preemptionBound: 1,
            maxSchedules: 30,
          }),
        );
        if (r === null) continue;
        ran++;
        // Any violation ends the exploration, and with it the audit of the steps after it: a
        // false one (tdx-populate-teardown once had one) hid an unrecorded change behind it.
        const found = r.violation?.violations ?? [];
        expect(found.map((v) => `${backend}: [${v.check}] ${v.message}`)).toEqual([]);
      }
      expect(ran).toBeGreaterThan(0);
      // The audit copies all shared state around every step, the backends' per-entry state
      // included: zap-refault takes about a minute alone, several under a loaded CI machine.
    }, 600_000);
  }

  // No shipped scenario deletes a memslot, ages, or tears down a dirty-logged slot: the obsolete
  // root's put before an entry, the zap of invalidated roots, the aging walk and the slot's
  // dirty bitmap going with it are audited here.
  const memslotOps: [string, string[], string][] = [
    [
      "dirty logging, aging, then the slot's deletion",
      ["plain"],
      "  - { op: dirty-log, action: start }\n  - { op: age, gpa: 0x0, size: 4MiB }\n" +
        "  - { op: dirty-log, action: collect }\n  - { op: delete-memslot, slot: 0 }\n",
    ],
    [
      "a dirty-logged slot's teardown",
      ["plain"],
      "  - { op: dirty-log, action: start }\n  - { op: teardown }\n",
    ],
    [
      "aging, the slot's deletion, then the teardown",
      ["plain", "sev", "tdx", "cca"],
      "  - { op: age, gpa: 0x0, size: 4MiB }\n  - { op: delete-memslot, slot: 0 }\n" +
        "  - { op: teardown }\n",
    ],
  ];
  for (const [what, backends, host] of memslotOps) {
    it(`finds every change recorded in ${what}, against two faulting vCPUs`, () => {
      for (const backend of backends) {
        // Shared accesses: a private one to a deleted slot stops the vCPU (the VMM cannot
        // convert it), and would end the run before the steps the audit is for.
        const shared = backend === "plain" ? "" : ", shared: true";
        const text =
          `name: audit-memslot\nvm: { memory: 4MiB, vcpus: 2 }\nbackend: ${backend}\nvcpus:\n` +
          `  - - { op: access, gpa: 0x0, count: 2, write: true${shared} }\n` +
          `  - - { op: access, gpa: 0x200000, count: 2, write: true${shared} }\nhost:\n${host}`;
        const scn = parseScenarioText(text, "audit-memslot.yaml");
        const r = exploreScenario(scn, {
          backend: registry.source(backend),
          audit: true,
          preemptionBound: 1,
          maxSchedules: 40,
        });
        const found = r.violation?.violations ?? [];
        expect(found.map((v) => `${backend}: [${v.check}] ${v.message}`)).toEqual([]);
        expect(r.schedules).toBeGreaterThan(1);
      }
    }, 300_000);
  }

  it("fails a step that changes shared state without recording it, naming the step and the state", () => {
    const scn = oneOp("audit", "plain", "{ op: access, gpa: 0x0, write: true }");
    // A task that bumps mmu_invalidate_seq behind its accessors' back.
    const v = auditWithSneaky(scn, "plain", (built) => {
      (built.vm.mmu as unknown as { seq: number }).seq++;
    });
    expect(v).not.toBeNull();
    expect(v!.check).toBe("footprint-audit");
    expect(v!.message).toMatch(
      /a step of sneaky changed its state \(mmu_invalidate\) without recording a write/,
    );
  });

  it("fails a step whose change the checks see but the check version does not", () => {
    const scn = oneOp("audit-version", "plain", "{ op: access, gpa: 0x0, write: true }");
    // A write recorded, but not through the clock: an entry of the root that is neither empty
    // nor FROZEN, which the explorer would not check (the version did not move).
    const v = auditWithSneaky(scn, "plain", (built) => {
      const pool = built.host.pool;
      // Found as an observer would: the step's unrecorded write is what is under test.
      const root = built.clock.observe(() => built.vm.mmu.peekRoots()[0]!);
      built.clock.fp?.write(root.slot * 512 + 5);
      pool.tableMem(root.slot)[pool.tableOff(root.slot) + 10] = 0x10;
    });
    expect(v?.check).toBe("footprint-audit");
    expect(v?.message).toMatch(
      /a step changed what the invariants read without moving the check version: non-present SPTE/,
    );
  });

  it("fails a check that reads what the clock says no check reads", () => {
    const scn = oneOp("audit-unread", "tdx", "{ op: accept, gpa: 0x0 }");
    // As if the PAMT's entries (the second resource space of a TD's run) were read by no check.
    const space1 = (id: number) =>
      id <= -1099511627776 - 4294967296 && id > -1099511627776 - 2 * 4294967296;
    const spy = vi
      .spyOn(Clock.prototype, "isChecked")
      .mockImplementation((id: number) => !space1(id));
    try {
      const r = exploreScenario(scn, {
        backend: registry.source("tdx"),
        audit: true,
        maxSchedules: 5,
      });
      const v = r.violation?.violations[0];
      expect(v?.check).toBe("footprint-audit");
      expect(v?.message).toMatch(
        /the invariant checks read resource \d+ of space 1.*, which the clock says no check reads/,
      );
    } finally {
      spy.mockRestore();
    }
  });

  it("fails a step that takes host frames or grows the table pool without recording it", () => {
    const scn = oneOp("audit-frames", "plain", "{ op: access, gpa: 0x0, write: true }");
    // Frames taken from the host's allocator with its recorder detached.
    const frames = auditWithSneaky(scn, "plain", (built) => {
      const f = built.host.frames;
      const fp = f.fp;
      f.fp = null;
      f.allocBlocks(1, 1, 99, "sneaky");
      f.fp = fp;
    });
    expect(frames?.message).toMatch(
      /a step of sneaky changed its state \(host frames\) without recording a write/,
    );
    // Through the allocator, whoever the caller is, the frames taken are recorded.
    expect(
      auditWithSneaky(scn, "plain", (built) => {
        built.host.frames.allocBlocks(1, 1, 99, "sneaky");
      }),
    ).toBeNull();
    // A cache topped up with the recorder detached: the pool's free slots change unrecorded.
    const pool = auditWithSneaky(scn, "plain", (built) => {
      const p = built.host.pool;
      const fp = p.fp;
      p.fp = null;
      p.topUp(new ExecCtx("sneaky", true), 1);
      p.fp = fp;
    });
    expect(pool?.message).toMatch(
      /a step of sneaky changed its state \((page-table pool|host frames)\)/,
    );
  });

  it("fails a step that reorders the pool's free list, swaps blocks' owners or moves an RCU reader, unrecorded", () => {
    const scn = oneOp("audit-orders", "plain", "{ op: access, gpa: 0x0, write: true }");
    // The same number of free slots, in another order: another table for the next allocation.
    const order = auditWithSneaky(scn, "plain", (built) => {
      const p = built.host.pool as unknown as { freeSlots: Int32Array; nFree: number };
      if (p.nFree < 2) return;
      [p.freeSlots[0], p.freeSlots[1]] = [p.freeSlots[1]!, p.freeSlots[0]!];
    });
    expect(order?.message).toMatch(/a step of sneaky changed its state \(page-table pool\)/);
    // As many blocks used, but two of them trade owners.
    const owners = auditWithSneaky(scn, "plain", (built) => {
      const o = built.host.frames.blockOwner;
      const a = o.findIndex((x) => x !== 0);
      const b = o.findIndex((x) => x !== 0 && x !== o[a]);
      if (a < 0 || b < 0) return;
      [o[a], o[b]] = [o[b]!, o[a]!];
    });
    expect(owners?.message).toMatch(
      /a step of sneaky changed the owner of a host block \(host frames\)/,
    );
    // A vCPU inside an RCU read-side section (a TDX fault holds it across the mirror's hook)
    // made to have entered a grace period later.
    const tdx = oneOp("audit-rcu", "tdx", "{ op: accept, gpa: 0x0 }");
    const rcu = auditWithSneaky(tdx, "tdx", (built) => {
      // Read, so that the search runs this step where the vCPU holds RCU too; written unrecorded.
      built.clock.fp?.read(R_RCU);
      const ctx = built.vm.vcpus[0]!.ctx;
      if (ctx.rcuNest > 0) ctx.rcuGp++;
    });
    expect(rcu?.message).toMatch(/a step of sneaky changed its state \(RCU\)/);
  });

  it("fails a step that raises the finalized flag without recording it", () => {
    const scn = parseScenarioText(
      `
name: audit-finalized
vm: { memory: 4MiB, vcpus: 1 }
backend: tdx
host:
  - { op: finalize }
vcpus:
  - - { op: accept, gpa: 0x0 }
`,
      "audit-finalized.yaml",
    );
    const v = auditWithSneaky(scn, "tdx", (built) => {
      (built.finalized as unknown as { value: boolean }).value = true;
    });
    expect(v?.message).toMatch(
      /a step of sneaky changed its state \(finalize\) without recording a write/,
    );
  });

  it("fails a step that changes a linked table's kvm_mmu_page fields without writing its SPTE", () => {
    const scn = oneOp("audit-sp-fields", "plain", "{ op: access, gpa: 0x0, write: true }");
    // The table under the root's first entry, once the fault has linked it.
    const child = (built: ReturnType<typeof buildRun>) => {
      const pool = built.host.pool;
      const root = built.clock.observe(() => built.vm.mmu.peekRoots()[0]);
      if (root === undefined) return -1;
      const lo = pool.tableMem(root.slot)[pool.tableOff(root.slot)]!;
      return (lo & 1) === 0 ? -1 : pool.pfnToSlot(lo >>> 12);
    };
    const v = auditWithSneaky(scn, "plain", (built) => {
      const slot = child(built);
      if (slot >= 0) built.host.pool.spOwner[slot] = 99;
    });
    expect(v?.message).toMatch(
      /a step of sneaky changed the kvm_mmu_page fields of the table it links \(SPTE 0 of table slot \d+\) without recording a write/,
    );
    // The same change with the linking SPTE written passes the audit (the SPTE's writer owns
    // the table), and the invariant check after it finds the owner wrong.
    const recorded = auditWithSneaky(scn, "plain", (built) => {
      const slot = child(built);
      if (slot < 0) return;
      const root = built.clock.observe(() => built.vm.mmu.peekRoots()[0]!);
      built.clock.touch(root.slot * 512);
      built.host.pool.spOwner[slot] = 99;
    });
    expect(recorded?.check).toBe("table-role");
  });

  it("checks the state after a step that only frees host frames", () => {
    const scn = oneOp("audit-frames-checked", "plain", "{ op: access, gpa: 0x0, write: true }");
    // Through the allocator (recorded), the host page that backs GPA 0 goes back to the host
    // while the guest's memory still holds it: which frames are whose is what the checks read,
    // so the check right after this step must run and fail. Left out of the check version, the
    // step would be taken as changing nothing a check sees (the audit's complaint).
    const v = auditWithSneaky(scn, "plain", (built) => {
      const frames = built.host.frames;
      const pfn = built.clock.observe(() => built.vm.memslots.find(0)!.shared.peekPfn(0));
      if (pfn < 0) return;
      const block = Math.floor(pfn / 512);
      frames.freeBlock(block, frames.ownerOfPfn(pfn));
    });
    expect(v?.check).not.toBe("footprint-audit");
    expect(v?.message).toMatch(/free/);
  });

  it("finds the frames a raw call takes for itself recorded, on CCA and SEV", () => {
    // RMI_DATA_CREATE takes a fresh source page whatever page it maps; SEV's raw calls take one
    // unless told which. Beside a vCPU whose fault takes guest memory from the same allocator.
    for (const [backend, call] of [
      ["cca", "{ op: raw, call: RMI_DATA_CREATE, gpa: 0x10000, page: 0x3ff }"],
      ["sev", "{ op: raw, call: RMPUPDATE.PRIVATE, gpa: 0x10000 }"],
    ] as const) {
      const scn = parseScenarioText(
        `
name: audit-raw-frames
vm: { memory: 4MiB, vcpus: 1 }
backend: ${backend}
host:
  - ${call}
vcpus:
  - - { op: access, gpa: 0x200000, write: true }
`,
        "audit-raw-frames.yaml",
      );
      const r = exploreScenario(scn, { backend: registry.source(backend), audit: true });
      expect(r.exhausted, backend).toBe(true);
      expect(r.violation?.violations ?? [], backend).toEqual([]);
    }
  });

  it("fails a step that changes a backend's own state without recording it (an S-EPT entry, an RMP entry)", () => {
    const scn = oneOp("audit-backend", "tdx", "{ op: accept, gpa: 0x0 }");
    for (const name of ["tdx", "sev"]) {
      // A task that flips a bit of the backend's state behind its accessors' back.
      const v = auditWithSneaky(scn, name, (built) => {
        const be = built.vm.backend as unknown as {
          module?: {
            peekTds(): ReadonlyMap<number, { septRoot: number }>;
            sept: { get(pfn: number): Uint32Array | undefined };
          };
          rmp?: { assigned(): Iterable<{ pfn: number }> };
        };
        if (be.module) {
          // Found as an observer would; the unrecorded write is what is under test.
          const td = built.clock.observe(() => [...be.module!.peekTds().values()][0]!);
          be.module.sept.get(td.septRoot)![2]! ^= 1;
        } else {
          // The Validated bit of the first assigned frame's entry, in the RMP's own array.
          const pfn = built.clock.observe(() => [...be.rmp!.assigned()][0]!.pfn);
          (be.rmp as unknown as { blocks: { flags: Uint8Array }[] }).blocks[pfn >>> 12]!.flags[
            pfn & 4095
          ]! ^= 8;
        }
      });
      expect(v, name).not.toBeNull();
      expect(v!.check).toBe("footprint-audit");
      expect(v!.message).toMatch(
        /a step of sneaky changed its state \(resource \d+ of space \d+\) without recording a write/,
      );
    }
  });

  it("fails a step that changes the TDX platform's bring-up state, which leaves read unrecorded", () => {
    const scn = oneOp("audit-tdx-platform", "tdx", "{ op: accept, gpa: 0x0 }");
    type Module = {
      sys: { numInitLps: number };
      pamt: { setUsableFrames(n: number): void; usableFrames: number };
    };
    for (const tamper of [
      (m: Module) => {
        m.sys.numInitLps++;
      },
      (m: Module) => m.pamt.setUsableFrames(m.pamt.usableFrames - 512),
    ]) {
      const v = auditWithSneaky(scn, "tdx", (built) =>
        tamper((built.vm.backend as unknown as { module: Module }).module),
      );
      expect(v?.check).toBe("footprint-audit");
      expect(v?.message).toMatch(
        /a step of sneaky changed its state \(resource 2147483647 of space \d+\) without recording a write/,
      );
    }
  });

  it("finds the TDX bring-up leaves, called raw on a platform that is up, change nothing", () => {
    const scn = parseScenarioText(
      `
name: audit-tdx-sys
vm: { memory: 4MiB, vcpus: 2 }
backend: tdx
host:
  - { op: raw, call: TDH.SYS.INIT }
  - { op: raw, call: TDH.SYS.LP.INIT, vcpu: 1 }
  - { op: raw, call: TDH.SYS.KEY.CONFIG }
  - { op: raw, call: TDH.SYS.TDMR.INIT }
vcpus:
  - - { op: accept, gpa: 0x0 }
`,
      "audit-tdx-sys.yaml",
    );
    const r = exploreScenario(scn, { backend: registry.source("tdx"), audit: true });
    // Refused, they touch nothing recorded: one run covers every order.
    expect(r.exhausted).toBe(true);
    expect(r.violation?.violations ?? []).toEqual([]);
  });

  it("fails a step that changes the CCA RMM's state without recording it (an RTT entry, a granule)", () => {
    const scn = oneOp("audit-cca", "cca", "{ op: accept, gpa: 0x0 }");
    type Rmm = {
      // The store's private array: the sneaky step goes around its recording accessors.
      rtts: { rip: Uint8Array; ch: Int32Array };
      granules: { state: Uint8Array };
      realms: Map<number, { rootSlot: number; rd: number }>;
    };
    for (const tamper of [
      (rmm: Rmm) => {
        rmm.rtts.rip[[...rmm.realms.values()][0]!.rootSlot * 512 + 7]! ^= 1;
      },
      (rmm: Rmm) => {
        rmm.granules.state[[...rmm.realms.values()][0]!.rd]! ^= 1;
      },
      (rmm: Rmm) => {
        // The child slot of the starting table's first table entry.
        const root = [...rmm.realms.values()][0]!.rootSlot * 512;
        let e = root;
        while (rmm.rtts.ch[e]! < 0) e++;
        rmm.rtts.ch[e]! ^= 1;
      },
    ]) {
      const v = auditWithSneaky(scn, "cca", (built) =>
        tamper((built.vm.backend as unknown as { rmm: Rmm }).rmm),
      );
      expect(v).not.toBeNull();
      expect(v!.check).toBe("footprint-audit");
      expect(v!.message).toMatch(
        /a step of sneaky changed its state \(resource \d+ of space \d+\) without recording a write/,
      );
    }
  });
});
