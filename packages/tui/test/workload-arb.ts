/**
 * Random workloads for the property tests, as fast-check arbitraries (so a failure shrinks to
 * a small scenario): a VM of 4 or 8 MiB, one or two vCPUs of guest ops, a launch (pages
 * populated, then finalize) and host ops, rendered as the scenario text a user would write.
 * The schedule is round-robin without interleaving, so every backend runs the ops in one order.
 */
import fc from "fast-check";

export type HostOpKind = "zap" | "age" | "convert" | "split" | "recover";

export interface Workload {
  memoryMiB: 4 | 8;
  hugepages: boolean;
  vcpus: GuestOp[][];
  populate: number[];
  host: { kind: HostOpKind; region: number; toPrivate: boolean }[];
}

export type GuestOp =
  | { op: "access"; page: number; count: number; write: boolean }
  | { op: "access-shared"; page: number }
  | { op: "accept"; page: number; count: number }
  | { op: "convert"; region: number; toPrivate: boolean };

const guestOp: fc.Arbitrary<GuestOp> = fc.oneof(
  fc.record({
    op: fc.constant("access" as const),
    page: fc.nat(),
    count: fc.integer({ min: 1, max: 8 }),
    write: fc.boolean(),
  }),
  fc.record({ op: fc.constant("access-shared" as const), page: fc.nat() }),
  fc.record({
    op: fc.constant("accept" as const),
    page: fc.nat(),
    count: fc.integer({ min: 1, max: 4 }),
  }),
  fc.record({ op: fc.constant("convert" as const), region: fc.nat(), toPrivate: fc.boolean() }),
);

/** Workloads whose host ops are among `hostKinds`, with or without 2 MiB host pages. */
export function workloadArb(
  hostKinds: readonly HostOpKind[],
  hugepages: fc.Arbitrary<boolean> = fc.boolean(),
): fc.Arbitrary<Workload> {
  return fc.record({
    memoryMiB: fc.constantFrom(4 as const, 8 as const),
    hugepages,
    vcpus: fc.array(fc.array(guestOp, { minLength: 1, maxLength: 5 }), {
      minLength: 1,
      maxLength: 2,
    }),
    populate: fc.uniqueArray(fc.nat(), { maxLength: 2 }),
    host: fc.array(
      fc.record({ kind: fc.constantFrom(...hostKinds), region: fc.nat(), toPrivate: fc.boolean() }),
      { maxLength: 3 },
    ),
  });
}

const hex = (n: number) => `0x${n.toString(16)}`;

export function workloadText(w: Workload, backend: string): string {
  const pages = w.memoryMiB * 256;
  const regions = w.memoryMiB / 2;
  // A run of `count` pages from `page`, inside guest memory.
  const at = (page: number, count = 1) => hex((page % (pages - count + 1)) * 4096);
  const region = (r: number) => hex((r % regions) * 0x200000);
  const to = (p: boolean) => (p ? "private" : "shared");
  const guest = (o: GuestOp): string => {
    switch (o.op) {
      case "access":
        return `{ op: access, gpa: ${at(o.page, o.count)}, count: ${o.count}, write: ${o.write} }`;
      case "access-shared":
        return `{ op: access, gpa: ${at(o.page)}, shared: true, write: true }`;
      case "accept":
        return `{ op: accept, gpa: ${at(o.page, o.count)}, count: ${o.count} }`;
      case "convert":
        return `{ op: convert, gpa: ${region(o.region)}, size: 2MiB, to: ${to(o.toPrivate)} }`;
    }
  };
  const lines = [
    `name: workload-${backend}`,
    `vm: { memory: ${w.memoryMiB}MiB, vcpus: ${w.vcpus.length}, hugepages: ${w.hugepages ? "2MiB" : "false"} }`,
    `backend: ${backend}`,
    "schedule: { mode: round-robin, interleave: false }",
    "vcpus:",
    ...w.vcpus.flatMap((ops) => ops.map((o, i) => `${i === 0 ? "  - - " : "    - "}${guest(o)}`)),
  ];
  const populated = [...new Set(w.populate.map((p) => p % pages))];
  const host = populated.map((p) => `{ op: populate, gpa: ${at(p)}, size: 4KiB }`);
  if (host.length > 0) host.push("{ op: finalize }");
  for (const h of w.host) {
    host.push(
      h.kind === "convert"
        ? `{ op: convert, gpa: ${region(h.region)}, size: 2MiB, to: ${to(h.toPrivate)} }`
        : `{ op: ${h.kind}, gpa: ${region(h.region)}, size: 2MiB }`,
    );
  }
  if (host.length > 0) lines.push("host:", ...host.map((o) => `  - ${o}`));
  return lines.join("\n") + "\n";
}

/** The GFNs the workload populates. */
export function populatedGfns(w: Workload): Set<number> {
  return new Set(w.populate.map((p) => p % (w.memoryMiB * 256)));
}

/** The GFNs some conversion (the guest's or the host's) covers. */
export function convertedGfns(w: Workload): Set<number> {
  const regions = w.memoryMiB / 2;
  const out = new Set<number>();
  const add = (r: number) => {
    for (let g = (r % regions) * 512; g < ((r % regions) + 1) * 512; g++) out.add(g);
  };
  for (const o of w.vcpus.flat()) if (o.op === "convert") add(o.region);
  for (const h of w.host) if (h.kind === "convert") add(h.region);
  return out;
}
