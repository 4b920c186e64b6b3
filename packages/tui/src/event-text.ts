/** One line of text for an event: what the replay's --steps and the UI's event pane show. */
import { formatSpte, type TdpEvent } from "@tdpemu/core";

export function describeEvent(e: TdpEvent): string {
  switch (e.type) {
    case "spte":
      return `${e.by} ${e.mirror ? "mirror " : ""}L${e.level} gfn 0x${e.gfn.toString(16)}: ${formatSpte(e.oldLo, e.oldHi)} → ${formatSpte(e.newLo, e.newHi)}`;
    case "table":
      return `table ${e.action} slot ${e.slot} L${e.level} gfn 0x${e.gfn.toString(16)}`;
    case "fault":
      return `fault gpa 0x${e.gpa.toString(16)} ${e.write ? "write" : "read"}${e.private ? " private" : ""}: ${e.result}`;
    case "hook":
      return `${e.hook}(gfn 0x${e.gfn.toString(16)}, L${e.level}) = ${e.result}`;
    case "flush":
      return `TLB flush (${e.reason})`;
    case "op":
      return `${e.phase} ${e.op}`;
    case "access":
      return `access gpa 0x${e.gpa.toString(16)}: ${e.result}`;
    case "root":
      return `root ${e.action} ${e.root}${e.mirror ? " (mirror)" : ""}`;
    case "attributes":
      return `attributes gfn 0x${e.gfn.toString(16)}+${e.npages} → ${e.private ? "private" : "shared"}`;
    case "call":
      return `${e.name} ${e.detail}: ${e.status}${e.injected ? " (injected)" : ""}`;
    case "lock":
      return `mmu_lock taken for ${e.mode} after waiting for ${e.after}`;
  }
}
