/**
 * Scenario format v1, defined once (docs/scenario-format.md is generated from it, and
 * `tdpemu schema scenario` prints it as JSON Schema): the VM, the default backend, the schedule,
 * one program per vCPU and one for the host. The TypeScript types below are inferred from it.
 *
 * The schema checks what a JSON Schema can say of one field or one op (types, words, units, page
 * alignment, unknown keys). What depends on the VM as a whole (an address beyond its memory, a
 * vCPU it does not have) is checked after it, in `parse.ts`.
 */
import { z } from "zod";
import { bool, list, mapping, num, oneOf, show, size, text } from "./schema-kit.js";

const PAGE = 4096;
const PAGE_2M = 512 * PAGE;

export const GUEST_OPS = ["access", "accept", "convert", "psc", "rmpadjust"] as const;
export const HOST_OPS = [
  "populate",
  "finalize",
  "convert",
  "zap",
  "dirty-log",
  "age",
  "split",
  "recover",
  "delete-memslot",
  "teardown",
  "terminate",
  "raw",
] as const;
export const STRATEGIES = ["freeze", "atomic-then-hook"] as const;

/** A plugin's host op is named `<backend>.<op>`; built-in ops have no dot. */
export const PLUGIN_OP = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+$/;

const GPA_MISSING = { missing: "missing key 'gpa'" };
const gpa = () =>
  num(undefined, GPA_MISSING).describe("A guest physical address (decimal or 0x hex).");
/** A 4KiB-aligned guest physical address (a page or range op's start). */
const pageGpa = () =>
  gpa()
    .refine((n) => n % PAGE === 0, {
      error: (iss) => `expected a 4KiB-aligned guest physical address, got ${show(iss.input)}`,
    })
    .describe("A 4KiB-aligned guest physical address (decimal or 0x hex).");
const count = () =>
  num()
    .refine((n) => n >= 1, { error: (iss) => `expected at least 1 page, got ${show(iss.input)}` })
    .prefault(1)
    .describe("How many pages, from 1.");
const pageSize = () =>
  size({ only: [PAGE, PAGE_2M], what: "4KiB or 2MiB" })
    .prefault(PAGE)
    .describe("The page size: 4KiB or 2MiB.");
const rangeSize = () =>
  size({ pageMultiple: true }).describe("Bytes, a multiple of 4KiB (4KiB, 2MiB, 0x1000 ...).");
const vmpl = (missing?: string) =>
  num(undefined, { missing }).refine((n) => n <= 3, {
    error: (iss) => `expected a VMPL from 0 to 3, got ${show(iss.input)}`,
  });
const to = () => oneOf(["private", "shared"]).describe("What the range becomes.");
const slot = () =>
  num()
    .refine((n) => n === 0, {
      error: (iss) =>
        `no memslot ${String(iss.input)}: format v1 gives a VM one memslot, 0, covering all of its memory`,
    })
    .prefault(0);

/** `gpa` must be aligned to the op's page size when it is 2MiB (4KiB is checked by the field). */
function alignedToSize(o: { gpa: number; size: number }, ctx: z.core.$RefinementCtx): void {
  if (o.size === PAGE_2M && o.gpa % PAGE_2M !== 0) {
    ctx.addIssue({
      code: "custom",
      path: ["gpa"],
      message: `expected a 2MiB-aligned guest physical address (the size is 2MiB), got ${show(o.gpa)}`,
    });
  }
}

const VmFormat = mapping(
  {
    memory: size({
      pageMultiple: true,
      missing: "missing key 'memory' (the guest memory size, e.g. 1GiB)",
    }).describe("Guest memory in bytes (1GiB, 0x40000000); one memslot from GPA 0."),
    gpaw: num()
      .refine((n): n is 48 | 52 => n === 48 || n === 52, {
        error: (iss) => `expected 48 or 52, got ${show(iss.input)}`,
      })
      .prefault(48)
      .describe("Guest physical address width: 48 (4-level EPT/NPT) or 52 (5-level)."),
    vcpus: num()
      .refine((n) => n >= 1 && n <= 64, {
        error: (iss) => `expected between 1 and 64 vCPUs, got ${show(iss.input)}`,
      })
      .prefault(1)
      .describe("Number of vCPUs, 1 to 64."),
    hugepages: z
      .union([z.boolean(), z.literal("2MiB"), z.literal("1GiB")], {
        error: (iss) => `expected false, true, 2MiB or 1GiB, got ${show(iss.input)}`,
      })
      .prefault(false)
      .transform((h) => (h === true ? "2MiB" : h))
      .describe("Huge pages backing guest memory: false, true (2MiB), 2MiB or 1GiB."),
  },
  "a mapping with memory, gpaw, vcpus, hugepages",
  { missing: "missing key 'vm' (e.g. vm: { memory: 1GiB })" },
);

const ScheduleFormat = mapping(
  {
    mode: oneOf(["random", "round-robin", "replay"])
      .prefault("round-robin")
      .describe("How the next task is picked at each step."),
    seed: num()
      .refine((n) => n <= 0xffffffff, {
        error: (iss) => `expected a seed below 2^32, got ${show(iss.input)}`,
      })
      .prefault(0)
      .describe("The random schedule's seed, below 2^32."),
    /** replay: the schedule file, resolved against the scenario's folder. */
    file: z
      .string({
        error: (iss) =>
          `expected the path of a schedule file (mode replay), got ${show(iss.input)}`,
      })
      .optional()
      .describe("mode replay: the schedule file, relative to the scenario."),
    /**
     * true: vCPUs and the host interleave at every atomic point; false: each op runs whole.
     * Defaults to true when more than one program has ops.
     */
    interleave: bool()
      .optional()
      .describe(
        "Interleave at every atomic point (default when more than one program has ops), or run each op whole.",
      ),
  },
  "a mapping with mode and seed",
)
  .superRefine((s, ctx) => {
    if (s.mode === "replay" && (s.file === undefined || s.file === "")) {
      ctx.addIssue({
        code: "custom",
        path: ["file"],
        message: `expected the path of a schedule file (mode replay), got ${show(s.file)}`,
      });
    } else if (s.mode !== "replay" && s.file !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["file"],
        message: "only meaningful with mode: replay",
      });
    }
  })
  .prefault({});

const AccessOp = mapping(
  {
    op: z.literal("access"),
    gpa: gpa(),
    count: count(),
    write: bool().prefault(false),
    shared: bool().prefault(false),
    /** The privilege level the vCPU runs the op at (SEV-SNP's VMPLs); only a backend with levels takes another. */
    vmpl: vmpl().prefault(0),
  },
  "an access",
).describe("The vCPU reads or writes `count` pages from `gpa`; a fault goes to KVM.");

/**
 * `size`: the page size the guest accepts at (TDG.MEM.PAGE.ACCEPT's level, PVALIDATE's page
 * size); `count` pages of it from `gpa`, which must be aligned to it. Always at VMPL0: a guest
 * above it validates through its SVSM (SVSM_CORE_PVALIDATE).
 */
const AcceptOp = mapping(
  { op: z.literal("accept"), gpa: pageGpa(), count: count(), size: pageSize() },
  "an accept",
)
  .superRefine(alignedToSize)
  .describe(
    "The guest accepts `count` private pages of `size` from `gpa` (TDG.MEM.PAGE.ACCEPT, PVALIDATE, RSI_IPA_STATE_SET).",
  );

/**
 * RMPADJUST of `count` pages of `size` from `gpa`, at `vmpl`: VMPL `target` gets `perms` (read 1,
 * write 2, execute-user 4, execute-supervisor 8); `vmsa` sets the VMSA bit (VMPL0).
 */
const RmpadjustOp = mapping(
  {
    op: z.literal("rmpadjust"),
    gpa: pageGpa(),
    count: count(),
    size: pageSize(),
    vmpl: vmpl().prefault(0),
    target: vmpl("missing key 'target' (the VMPL whose permissions change, below the caller's)"),
    perms: z
      .string({
        error: (iss) =>
          `expected permissions as letters r, w and x (execute, user and supervisor), such as rw, or "" for none, got ${show(iss.input)}`,
      })
      .regex(/^[rwx]*$/, {
        error: (iss) =>
          `expected permissions as letters r, w and x (execute, user and supervisor), such as rw, or "" for none, got ${show(iss.input)}`,
      })
      .prefault("")
      .transform(
        (p) => (p.includes("r") ? 1 : 0) | (p.includes("w") ? 2 : 0) | (p.includes("x") ? 12 : 0),
      ),
    vmsa: bool().prefault(false),
  },
  "an rmpadjust",
)
  .superRefine(alignedToSize)
  .describe(
    "RMPADJUST at `vmpl`: VMPL `target` gets `perms` (letters r, w, x) on `count` pages of `size` from `gpa`.",
  );

const ConvertOp = mapping(
  { op: z.literal("convert"), gpa: pageGpa(), size: rangeSize().prefault(PAGE), to: to() },
  "a convert",
).describe(
  "The guest asks the host to convert [gpa, gpa + size) to private or shared (KVM_HC_MAP_GPA_RANGE, a Page State Change).",
);

/**
 * The guest converts [gpa, gpa + size) itself (`guestPageStateChange`): PVALIDATE or ACCEPT around
 * a Page State Change / MapGPA request, in pages of `pagesize` (4 KiB or 2 MiB; the range is made
 * of whole pages of it).
 */
const PscOp = mapping(
  {
    op: z.literal("psc"),
    gpa: pageGpa(),
    size: rangeSize().prefault(PAGE),
    to: to(),
    pagesize: pageSize(),
  },
  "a psc",
)
  .superRefine((o, ctx) => {
    if (o.gpa % o.pagesize !== 0)
      ctx.addIssue({
        code: "custom",
        path: ["gpa"],
        message: `expected an address aligned to the page size (${show(o.pagesize)}), got ${show(o.gpa)}`,
      });
    else if (o.size % o.pagesize !== 0)
      ctx.addIssue({
        code: "custom",
        path: ["size"],
        message: `expected a multiple of the page size (${show(o.pagesize)}), got ${show(o.size)}`,
      });
  })
  .transform(({ pagesize, ...o }) => ({ ...o, pageSize: pagesize }))
  .describe(
    "The guest converts [gpa, gpa + size) itself, validating or releasing each page of `pagesize` around the request.",
  );

function opError(ops: readonly string[], example: string, plugins: boolean) {
  const names = `one of ${ops.join(", ")}${plugins ? ", or a plugin's op named <backend>.<op>" : ""}`;
  return (iss: { code?: string; input?: unknown }) =>
    iss.code === "invalid_type"
      ? `expected an op mapping such as ${example}, got ${show(iss.input)}`
      : `expected ${names}, got ${show((iss.input as Record<string, unknown> | undefined)?.op)}`;
}

export const GuestOpFormat = z.discriminatedUnion(
  "op",
  [AccessOp, AcceptOp, ConvertOp, PscOp, RmpadjustOp],
  {
    error: opError(GUEST_OPS, "{ op: access, gpa: 0x0 }", false),
  },
);

/** A range op's `gpa` and `size`; without them, the whole of guest memory (resolved in parse.ts). */
const hostRange = (op: "age" | "split" | "recover") =>
  mapping(
    { op: z.literal(op), gpa: pageGpa().prefault(0), size: rangeSize().optional() },
    `an ${op}`,
  );

/** A 64-bit value of a raw call: a number, or hex such as 0xffffffffffffffff (kept as text). */
const u64 = () => {
  const error = (iss: { input?: unknown }) =>
    `expected a 64-bit value: a number, or hex such as 0xffffffffffffffff, got ${show(iss.input)}`;
  return z
    .union(
      [
        z.number({ error }).int({ error }).min(0, { error }),
        z.string({ error }).regex(/^0x[0-9a-f]{1,16}$/i, { error }),
      ],
      { error },
    )
    .transform((x) => String(x))
    .optional();
};

const BuiltinHostOpFormat = z.discriminatedUnion(
  "op",
  [
    /** `measure`: KVM_TDX_MEASURE_MEMORY_REGION (TDH.MR.EXTEND of each page); true unless `measure: false`. */
    mapping(
      {
        op: z.literal("populate"),
        gpa: pageGpa(),
        size: rangeSize().prefault(PAGE),
        measure: bool().prefault(true),
      },
      "a populate",
    ).describe(
      "The VMM adds initial private memory before the guest runs (KVM_TDX_INIT_MEM_REGION, SNP_LAUNCH_UPDATE, DATA_CREATE).",
    ),
    mapping({ op: z.literal("finalize") }, "a finalize").describe(
      "The VMM finalizes the measured launch (TDH.MR.FINALIZE, SNP_LAUNCH_FINISH, REALM_ACTIVATE).",
    ),
    mapping(
      { op: z.literal("convert"), gpa: pageGpa(), size: rangeSize().prefault(PAGE), to: to() },
      "a convert",
    ).describe(
      "The VMM changes the memory attributes of [gpa, gpa + size) (KVM_SET_MEMORY_ATTRIBUTES).",
    ),
    mapping(
      { op: z.literal("zap"), gpa: pageGpa(), size: rangeSize().prefault(PAGE) },
      "a zap",
    ).describe("An MMU notifier invalidation of [gpa, gpa + size)."),
    mapping(
      { op: z.literal("dirty-log"), action: oneOf(["start", "collect", "stop"]), slot: slot() },
      "a dirty-log",
    ).describe(
      "Dirty logging on the memslot: start (write-protect), collect (KVM_GET_DIRTY_LOG), stop.",
    ),
    hostRange("age").describe(
      "Clears the accessed bits of the range (kvm_age_gfn); the whole of memory without gpa and size.",
    ),
    hostRange("split").describe(
      "Splits huge pages in the range down to 4K (eager page splitting).",
    ),
    hostRange("recover").describe(
      "Recovers huge pages in the range (NX huge page recovery, collapsing after dirty logging).",
    ),
    mapping({ op: z.literal("delete-memslot"), slot: slot() }, "a delete-memslot").describe(
      "Deletes the memslot (kvm_mmu_zap_memslot).",
    ),
    mapping({ op: z.literal("teardown") }, "a teardown").describe(
      "Destroys the VM: every root and backend table, in the kernel's order.",
    ),
    mapping({ op: z.literal("terminate") }, "a terminate").describe(
      "Marks the VM dead (KVM_TDX_TERMINATE_VM, the reclaim-first teardown).",
    ),
    /** An untrusted host's raw call: operands are passed as given (the point is to break rules). */
    mapping(
      {
        op: z.literal("raw"),
        call: text("the architectural name of a call, e.g. TDH.MEM.PAGE.REMOVE"),
        gpa: num().optional(),
        level: num().optional(),
        page: z
          .union([num("a host PFN, fresh or mapped"), z.literal("fresh"), z.literal("mapped")])
          .optional(),
        vcpu: num("a vCPU index").optional(),
        field: text(
          "a metadata field's name (TSC_OFFSET, POSTED_INTR_NV, ...) or its id in hex",
        ).optional(),
        value: u64(),
        mask: u64(),
      },
      "a raw call",
    ).describe(
      "An untrusted host's raw call (a SEAMCALL, an RMP instruction, an RMI command) with operands as given.",
    ),
  ],
  { error: opError(HOST_OPS, "{ op: zap, gpa: 0x0, size: 2MiB }", true) },
);

/**
 * A host op a plugin backend defines (`Backend.hostOps`), named `<backend>.<op>`: its operands as
 * written (`args`) are checked against the backend's schema when the run is built, which fills
 * `values` (`checkPluginOps`). `at` and `line` say where it was written (filled by the parser).
 */
function genericPluginOpFormat(known: readonly string[]) {
  // A backend the schema spells out has its own ops checked by name: the generic form leaves them out.
  const except = known.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
  const pattern =
    known.length === 0 ? PLUGIN_OP : new RegExp(`^(?!(?:${except})$)${PLUGIN_OP.source.slice(1)}`);
  return z
    .looseObject({ op: z.string().regex(pattern, { abort: true }) })
    .transform(({ op, ...args }) => ({
      op: "plugin" as const,
      name: op,
      args,
      at: "",
      line: undefined as number | undefined,
      values: undefined as Record<string, number | string | boolean> | undefined,
    }));
}

const PluginHostOpFormat = genericPluginOpFormat([]);

/** Built-in ops first: a union that fails reports its first alternative (schema-kit.ts). */
export const HostOpFormat = z.union([BuiltinHostOpFormat, PluginHostOpFormat]);

export const InjectFormat = mapping(
  {
    /** The architectural name of the call (TDH.MEM.PAGE.AUG, RMPUPDATE, ...) ... */
    call: text("the architectural name of a call").describe(
      "The call, by its architectural name (TDH.MEM.PAGE.AUG, RMPUPDATE, RMI_DATA_CREATE ...).",
    ),
    /** ... its nth invocation (1-based) in this VM fails ... */
    nth: num()
      .refine((n) => n >= 1, {
        error: (iss) => `expected 1 or more (the first call is 1), got ${show(iss.input)}`,
      })
      .prefault(1)
      .describe("Its nth invocation in this VM fails (the first is 1) ..."),
    /** ... with this status (a status name of the backend: OPERAND_BUSY, FAIL_INUSE, ...) ... */
    status: text("a status name such as OPERAND_BUSY").describe(
      "... with this status, an error by the backend's name for it (OPERAND_BUSY, FAIL_INUSE, RMI_ERROR_RTT(2); a success is refused: the call would not run) ...",
    ),
    /** ... and so do the following times - 1 invocations. */
    times: num()
      .refine((n) => n >= 1, { error: (iss) => `expected 1 or more, got ${show(iss.input)}` })
      .prefault(1)
      .describe("... and so do the next times - 1 invocations."),
    /** Only on this backend (calls are architectural, so a scenario for several backends names it). */
    backend: text("a backend name")
      .optional()
      .describe(
        "Only on this backend (calls are architectural; a scenario for several backends names it).",
      ),
  },
  "a mapping with call, nth, status",
);

export const InjectListFormat = list(
  InjectFormat,
  "a list such as [{ call: TDH.MEM.PAGE.AUG, nth: 1, status: OPERAND_BUSY }]",
)
  .nullable()
  .transform((v) => v ?? []);

const OptionsFormat = mapping(
  {
    /** How a mirror SPTE becomes present (see `MirrorStrategy` in the core). */
    strategy: oneOf(STRATEGIES)
      .prefault("freeze")
      .describe(
        "How a mirror SPTE becomes present: freeze (the kernel's) or atomic-then-hook (the racy one).",
      ),
    /**
     * TDX maps private memory at 2 MiB where it can (the TDX huge-page series for KVM, a kvm_intel
     * parameter there); off, as in mainline, private mappings are 4K.
     */
    tdxHugePages: bool()
      .prefault(false)
      .describe("TDX maps private memory at 2 MiB where it can (the TDX huge-page series)."),
  },
  "a mapping such as { strategy: freeze }",
).prefault({});

/**
 * The document as written, checked field by field; `parse.ts` resolves it against the VM.
 * `hostOp` is the host op's format: `scenarioFormat(hostOpFormat(plugin ops))` describes a
 * scenario with a plugin's ops spelled out (for `tdpemu schema scenario --plugin`).
 */
export function scenarioFormat<H extends z.ZodType>(hostOp: H) {
  return mapping(
    {
      name: z
        .string({ error: (iss) => `expected a non-empty string, got ${show(iss.input)}` })
        .regex(/\S/, { error: (iss) => `expected a non-empty string, got ${show(iss.input)}` })
        .describe("What the scenario shows, in a few words."),
      vm: VmFormat.describe("The virtual machine: its memory, GPA width, vCPUs and huge pages."),
      backend: text("a backend name (tdx, sev, plain, cca) or a module path")
        .prefault("tdx")
        .describe(
          "The backend it runs on unless --backend says otherwise: tdx, sev, plain, cca or a plugin module's path.",
        ),
      schedule: ScheduleFormat.describe(
        "How the vCPUs and the host are interleaved (round-robin unless said).",
      ),
      vcpus: list(
        list(GuestOpFormat, "a list of guest ops")
          .nullable()
          .transform((p) => p ?? []),
        "a list with one list of ops per vCPU",
      )
        .prefault([])
        .describe("One program per vCPU: a list of guest ops (or null for none)."),
      host: list(hostOp, "a list of host ops")
        .nullable()
        .transform((h) => h ?? [])
        .prefault([])
        .describe("The host's program: VMM and kernel ops, and raw calls of an untrusted host."),
      options: OptionsFormat.describe("The MMU's options."),
      inject: InjectListFormat.prefault([]).describe(
        "Faults to inject: a backend call returns an error status on its nth invocation.",
      ),
    },
    "a scenario mapping with name, vm, vcpus",
  ).describe(
    "A tdpemu scenario (format v1): a VM, its backend, a schedule, and the programs of its vCPUs and host.",
  );
}

/** The host op's format with a plugin's own ops spelled out before the generic `<backend>.<op>`. */
export function hostOpFormat(pluginOps: readonly { name: string; format: z.ZodType }[]) {
  if (pluginOps.length === 0) return HostOpFormat;
  return z.union([
    BuiltinHostOpFormat,
    ...pluginOps.map((o) => o.format),
    genericPluginOpFormat(pluginOps.map((o) => o.name)),
  ]);
}

export const ScenarioFormat = scenarioFormat(HostOpFormat);

export type ScenarioDocument = z.output<typeof ScenarioFormat>;
export type VmSpec = z.output<typeof VmFormat>;
export type HugePages = VmSpec["hugepages"];
export type ScheduleSpec = z.output<typeof ScheduleFormat>;
export type GuestOp = z.output<typeof GuestOpFormat>;
/** A host op once resolved against the VM: every range has its size. */
export type HostOp = WithSize<z.output<typeof HostOpFormat>>;
type WithSize<T> = T extends { size?: number } ? Omit<T, "size"> & { size: number } : T;
export type Strategy = (typeof STRATEGIES)[number];
export type InjectSpec = z.output<typeof InjectFormat>;

export interface Scenario {
  name: string;
  /** Where it was read from (for messages and relative paths); "<built-in>" for the default. */
  source: string;
  vm: VmSpec;
  backend: string;
  /** The line of `backend:` in the file, for messages about it. */
  backendLine?: number;
  schedule: ScheduleSpec;
  vcpus: GuestOp[][];
  host: HostOp[];
  options: ScenarioDocument["options"];
  inject: InjectSpec[];
}
