/**
 * TDH.MNG.RD, TDH.VP.RD and TDH.VP.WR (`tdh_mng_rd_wr.c`, `tdh_vp_rd_wr.c`): the host reads a
 * TD's metadata and reads and writes a vCPU's, field by field. A field id (`md_field_id_t`,
 * tdx_api_defs.h) is the field code in bits 23:0, the element size code in 33:32, the last
 * element in 37:34 and the last field in 46:38 (both 0 for one element), the context in 54:52
 * (overwritten by the module), the class in 61:56 and "non-architectural" in bit 63; bits 31:24,
 * 49:47, 55 and 62 are reserved, and 50 and 51 are INC_SIZE and WRITE_MASK_VALID. The module
 * looks a field up by class and field code alone (`md_check_as_single_element_id` and the lookup
 * in metadata_generic.c), so the size, context, INC_SIZE, WRITE_MASK_VALID and bit 63 are
 * ignored on input.
 *
 * The model has the fields Linux's KVM uses: the TD's TSC offset and multiplier, ATTRIBUTES
 * and XFAM (TD execution controls, read-only), and the vCPU's posted-interrupt notification
 * vector and descriptor address, its pin-based controls (the host may write bit 7 only:
 * "process posted interrupts", which needs the two before), the guest RIP (neither readable nor
 * writable by the host of a production TD) and the pending-NMI flag.
 */
import { OPS_INIT_OR_RUNNABLE, tdPrologue } from "./leaf-checks.js";
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, check } from "./seam-result.js";
import {
  OPERAND_RCX,
  TDX_METADATA_FIELD_ID_INCORRECT,
  TDX_METADATA_FIELD_NOT_READABLE,
  TDX_METADATA_FIELD_NOT_WRITABLE,
  TDX_SUCCESS,
  TDX_TD_VMCS_FIELD_NOT_INITIALIZED,
  TDX_TDCX_NUM_INCORRECT,
  TDX_VCPU_ASSOCIATED,
  TDX_VCPU_STATE_INCORRECT,
} from "./status.js";
import type { Td, TdVcpu } from "./td.js";
import { MIN_TDVPS_PAGES, vcpuPrologue } from "./vp-leaves.js";

const CLASS_TD_EXECUTION_CONTROLS = 17;
const CLASS_VMCS = 0;
const CLASS_VCPU_MANAGEMENT = 32;

/** The VMCS encodings of the vCPU fields (class 0: the field code is the encoding). */
export const VMCS_POSTED_INTR_NV = 0x0002;
export const VMCS_POSTED_INTR_DESC_ADDR = 0x2016;
export const VMCS_PIN_BASED_VM_EXEC_CONTROL = 0x4000;
export const VMCS_GUEST_RIP = 0x681e;
const PIN_BASED_POSTED_INTR = 0x80n;

interface Field {
  /** What the host may read and write (a production TD's masks). */
  readMask: bigint;
  writeMask: bigint;
}

const ALL = 0xffffffffffffffffn;

/** TD fields by class * 2^24 + field code. */
const TD_FIELDS = new Map<number, Field>([
  [CLASS_TD_EXECUTION_CONTROLS * 2 ** 24 + 0x0, { readMask: ALL, writeMask: 0n }], // ATTRIBUTES
  [CLASS_TD_EXECUTION_CONTROLS * 2 ** 24 + 0x1, { readMask: ALL, writeMask: 0n }], // XFAM
  [CLASS_TD_EXECUTION_CONTROLS * 2 ** 24 + 0xa, { readMask: ALL, writeMask: 0n }], // TSC_OFFSET
  [CLASS_TD_EXECUTION_CONTROLS * 2 ** 24 + 0xb, { readMask: ALL, writeMask: 0n }], // TSC_MULTIPLIER
]);

/** vCPU fields by class * 2^24 + field code. */
const VP_FIELDS = new Map<number, Field>([
  [CLASS_VMCS * 2 ** 24 + VMCS_POSTED_INTR_NV, { readMask: 0xffffn, writeMask: 0xffffn }],
  [CLASS_VMCS * 2 ** 24 + VMCS_POSTED_INTR_DESC_ADDR, { readMask: ALL, writeMask: ALL }],
  [
    CLASS_VMCS * 2 ** 24 + VMCS_PIN_BASED_VM_EXEC_CONTROL,
    { readMask: 0xffffffffn, writeMask: PIN_BASED_POSTED_INTR },
  ],
  [CLASS_VMCS * 2 ** 24 + VMCS_GUEST_RIP, { readMask: 0n, writeMask: 0n }],
  [CLASS_VCPU_MANAGEMENT * 2 ** 24 + 11, { readMask: 1n, writeMask: 1n }], // TD_VCPU_PEND_NMI
]);

/**
 * A field id as the module checks it (`md_check_as_single_element_id`): its lookup key, or -1.
 * Taken apart as two 32-bit halves (KVM makes these calls for every vCPU it creates, and the
 * explorer creates a TD per schedule: a BigInt operation per bit field cost more than the leaf).
 */
function fieldKey(id: bigint): number {
  // A register holds 64 bits: anything else is no field id at all.
  if (id < 0n || id > 0xffffffffffffffffn) return -1;
  const hi = Number(id >> 32n);
  const lo = Number(id & 0xffffffffn);
  // Reserved bits 31:24, 49:47, 55 and 62; the last element (37:34) and last field (46:38).
  // The size (33:32), INC_SIZE (50), WRITE_MASK_VALID (51), the context (54:52) and the
  // non-architectural bit (63) are ignored: the lookup is by class and field code.
  const reserved = (lo >>> 24) | ((hi >>> 15) & 0x7) | ((hi >>> 23) & 1) | ((hi >>> 30) & 1);
  const lastElement = (hi >>> 2) & 0xf;
  const lastField = (hi >>> 6) & 0x1ff;
  if (reserved !== 0 || lastElement !== 0 || lastField !== 0) return -1;
  return ((hi >>> 24) & 0x3f) * 2 ** 24 + (lo & 0xffffff);
}

function lookup(fields: Map<number, Field>, id: bigint): { key: number; field: Field } {
  const key = fieldKey(id);
  const field = key < 0 ? undefined : fields.get(key);
  check(field !== undefined, TDX_METADATA_FIELD_ID_INCORRECT);
  // A VMCS field with the "high" access type (bit 0 of the encoding) is not one.
  check(key >= 2 ** 24 || (key & 1) === 0, TDX_METADATA_FIELD_ID_INCORRECT);
  return { key, field: field! };
}

/** TDH.MNG.RD: the TDR (RCX) locked shared, the TD past UNINITIALIZED, then the field (RDX); R8 the value. */
export function mngRdLeaf(m: SeamCore, tdr: number): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RCX, OPS_INIT_OR_RUNNABLE);
  const { key, field } = lookup(TD_FIELDS, m.mdOperands.id);
  check(field.readMask !== 0n, TDX_METADATA_FIELD_NOT_READABLE);
  return { status: TDX_SUCCESS, regs: { r8: td.metadata(key) & field.readMask } };
}

/**
 * What TDH.VP.RD and TDH.VP.WR check before the field: the TDVPR (RCX) locked shared, its TD's
 * TDR shared, the TD past UNINITIALIZED, all TDCX pages there (`map_tdvps`), the vCPU READY
 * and not associated with another LP (`check_and_associate_vcpu`, which associates it with
 * `lp`, the one the call runs on).
 */
function vpPrologue(m: SeamCore, tdvpr: number, lp: number): { td: Td; v: TdVcpu } {
  const { td, v } = vcpuPrologue(m, tdvpr, false, OPERAND_RCX, OPS_INIT_OR_RUNNABLE);
  check(v.tdvpsPages >= MIN_TDVPS_PAGES, TDX_TDCX_NUM_INCORRECT);
  check(v.initialized, TDX_VCPU_STATE_INCORRECT);
  const now = v.associatedLp;
  if (now !== lp) {
    check(now === -1, TDX_VCPU_ASSOCIATED);
    v.associatedLp = lp;
    td.addAssociatedVcpus(1);
  }
  return { td, v };
}

/** TDH.VP.RD on `lp`: R8 the field's value. */
export function vpRdLeaf(m: SeamCore, _tdr: number, tdvpr: number, lp: number): SeamResult {
  const { v } = vpPrologue(m, tdvpr, lp);
  const { key, field } = lookup(VP_FIELDS, m.mdOperands.id);
  check(field.readMask !== 0n, TDX_METADATA_FIELD_NOT_READABLE);
  return { status: TDX_SUCCESS, regs: { r8: v.metadata(key) & field.readMask } };
}

/**
 * TDH.VP.WR on `lp`: the bits of `value` that `mask` (R9) and the field's write mask both
 * select replace the field's; none selected is FIELD_NOT_WRITABLE. Turning on posted-interrupt
 * processing before the notification vector and the descriptor address were written is
 * TD_VMCS_FIELD_NOT_INITIALIZED with the missing field's encoding. R8 the old value.
 */
export function vpWrLeaf(m: SeamCore, _tdr: number, tdvpr: number, lp: number): SeamResult {
  const { v } = vpPrologue(m, tdvpr, lp);
  const { id, value, mask } = m.mdOperands;
  const { key, field } = lookup(VP_FIELDS, id);
  const wr = mask & field.writeMask;
  check(wr !== 0n, TDX_METADATA_FIELD_NOT_WRITABLE);
  const old = v.metadata(key);
  const next = (old & ~wr) | (value & wr);
  if (
    key === VMCS_PIN_BASED_VM_EXEC_CONTROL &&
    (next & PIN_BASED_POSTED_INTR) !== 0n &&
    (old & PIN_BASED_POSTED_INTR) === 0n
  ) {
    for (const needed of [VMCS_POSTED_INTR_NV, VMCS_POSTED_INTR_DESC_ADDR]) {
      check(v.metadataWritten(needed), TDX_TD_VMCS_FIELD_NOT_INITIALIZED, BigInt(needed));
    }
  }
  v.setMetadata(key, next);
  return { status: TDX_SUCCESS, regs: { r8: old & field.readMask } };
}

/**
 * A field id as Linux builds one (`BUILD_TDX_FIELD`: the class in bits 61:56, the field code
 * below): no context and no size, which the module fills in and ignores.
 */
export function fieldId(classCode: number, field: number): bigint {
  return (BigInt(classCode) << 56n) | BigInt(field);
}

export const TD_TSC_OFFSET = fieldId(CLASS_TD_EXECUTION_CONTROLS, 0xa);
export const TD_TSC_MULTIPLIER = fieldId(CLASS_TD_EXECUTION_CONTROLS, 0xb);
export const VP_POSTED_INTR_NV = fieldId(CLASS_VMCS, VMCS_POSTED_INTR_NV);
export const VP_POSTED_INTR_DESC_ADDR = fieldId(CLASS_VMCS, VMCS_POSTED_INTR_DESC_ADDR);
export const VP_PIN_BASED_VM_EXEC_CONTROL = fieldId(CLASS_VMCS, VMCS_PIN_BASED_VM_EXEC_CONTROL);
export const VP_GUEST_RIP = fieldId(CLASS_VMCS, VMCS_GUEST_RIP);
export const VP_PEND_NMI = fieldId(CLASS_VCPU_MANAGEMENT, 11);

/** The fields by the names a raw host call may give (`field: TSC_OFFSET`), or a field id as a hex string. */
const FIELD_NAMES: Readonly<Record<string, bigint>> = {
  ATTRIBUTES: fieldId(CLASS_TD_EXECUTION_CONTROLS, 0x0),
  XFAM: fieldId(CLASS_TD_EXECUTION_CONTROLS, 0x1),
  TSC_OFFSET: TD_TSC_OFFSET,
  TSC_MULTIPLIER: TD_TSC_MULTIPLIER,
  POSTED_INTR_NV: VP_POSTED_INTR_NV,
  POSTED_INTR_DESC_ADDR: VP_POSTED_INTR_DESC_ADDR,
  PIN_BASED_VM_EXEC_CONTROL: VP_PIN_BASED_VM_EXEC_CONTROL,
  GUEST_RIP: VP_GUEST_RIP,
  PEND_NMI: VP_PEND_NMI,
};

export function mdFieldByName(field: string | undefined): bigint {
  if (field === undefined)
    throw new Error(
      `a metadata call names its field: give field: one of ${Object.keys(FIELD_NAMES).join(", ")}, or a field id such as "0x111000030000000a"`,
    );
  const named = FIELD_NAMES[field];
  if (named !== undefined) return named;
  if (/^0x[0-9a-f]{1,16}$/i.test(field)) return BigInt(field);
  throw new Error(
    `unknown metadata field '${field}' (known: ${Object.keys(FIELD_NAMES).join(", ")}, or a field id in hex)`,
  );
}
