/**
 * TDX module status codes, as the module returns them in RAX (docs/tdx-module.md §0): the class in
 * bits 63:32 with an operand ID added into bits 31:0. 0x8… may succeed on retry, 0xC… will fail
 * again, 0x0… is success or a warning. Values from `tdx_error_codes_defs.h` (TDX module 1.5).
 */
import { StatusNames } from "@tdpemu/backend-sdk";

export const TDX_SUCCESS = 0n;
export const TDX_OPERAND_INVALID = 0xc000010000000000n;
export const TDX_OPERAND_ADDR_RANGE_ERROR = 0xc000010100000000n;
export const TDX_OPERAND_BUSY = 0x8000020000000000n;
export const TDX_PREVIOUS_TLB_EPOCH_BUSY = 0x8000020100000000n;
export const TDX_SYS_BUSY = 0x8000020200000000n;
export const TDX_SYS_INIT_NOT_PENDING = 0xc000050000000000n;
export const TDX_SYS_LP_INIT_DONE = 0xc000050300000000n;
export const TDX_SYS_NOT_READY = 0xc000050500000000n;
export const TDX_SYS_KEY_CONFIG_NOT_PENDING = 0xc000050700000000n;
export const TDX_SYS_LP_INIT_NOT_PENDING = 0xc000050b00000000n;
export const TDX_SYS_CONFIG_NOT_PENDING = 0xc000050c00000000n;
/** A warning (bit 63 clear): TDH.SYS.KEY.CONFIG on a package configured already. */
export const TDX_KEY_CONFIGURED = 0x0000081500000000n;
/** A warning: TDH.SYS.TDMR.INIT of a TDMR initialized already. */
export const TDX_TDMR_ALREADY_INITIALIZED = 0x00000a0300000000n;
/**
 * TDH.SYS.CONFIG's defects of a TDMR_INFO entry (`tdh_sys_config.c`): the details carry the
 * TDMR's index in bits 7:0 and, per code, the PAMT level (0 4K, 1 2M, 2 1G) or the reserved
 * area's index in bits 15:8, and another TDMR's index in bits 23:16
 * (`api_error_with_multiple_info`).
 */
export const TDX_INVALID_TDMR = 0xc0000a0000000000n;
export const TDX_NON_ORDERED_TDMR = 0xc0000a0100000000n;
export const TDX_TDMR_OUTSIDE_CMRS = 0xc0000a0200000000n;
export const TDX_INVALID_PAMT = 0xc0000a1000000000n;
export const TDX_PAMT_OUTSIDE_CMRS = 0xc0000a1100000000n;
export const TDX_PAMT_OVERLAP = 0xc0000a1200000000n;
export const TDX_INVALID_RESERVED_IN_TDMR = 0xc0000a2000000000n;
export const TDX_NON_ORDERED_RESERVED_IN_TDMR = 0xc0000a2100000000n;
export const TDX_OPERAND_BUSY_HOST_PRIORITY = 0x8000020400000000n;
export const TDX_PAGE_METADATA_INCORRECT = 0xc000030000000000n;
export const TDX_TD_ASSOCIATED_PAGES_EXIST = 0xc000040000000000n;
export const TDX_TD_FATAL = 0xe000060400000000n;
export const TDX_TDCS_NOT_ALLOCATED = 0xc000060600000000n;
export const TDX_LIFECYCLE_STATE_INCORRECT = 0xc000060700000000n;
export const TDX_OP_STATE_INCORRECT = 0xc000060800000000n;
export const TDX_TDCX_NUM_INCORRECT = 0xc000061000000000n;
export const TDX_VCPU_STATE_INCORRECT = 0xc000070000000000n;
export const TDX_TD_VMCS_FIELD_NOT_INITIALIZED = 0xc000073000000000n;
export const TDX_METADATA_FIELD_ID_INCORRECT = 0xc0000c0000000000n;
export const TDX_METADATA_FIELD_NOT_WRITABLE = 0xc0000c0100000000n;
export const TDX_METADATA_FIELD_NOT_READABLE = 0xc0000c0200000000n;
export const TDX_VCPU_ASSOCIATED = 0x8000070100000000n;
export const TDX_VCPU_NOT_ASSOCIATED = 0x8000070200000000n;
export const TDX_TD_KEYS_NOT_CONFIGURED = 0x8000081000000000n;
export const TDX_WBCACHE_NOT_COMPLETE = 0x8000081700000000n;
/** A warning (bit 63 clear): TDH.PHYMEM.CACHE.WB found no HKID waiting for it. */
export const TDX_NO_HKID_READY_TO_WBCACHE = 0x0000082100000000n;
export const TDX_FLUSHVP_NOT_DONE = 0x8000082400000000n;
export const TDX_EPT_WALK_FAILED = 0xc0000b0000000000n;
export const TDX_EPT_ENTRY_NOT_PRESENT = 0xc0000b0300000000n;
export const TDX_GPA_RANGE_NOT_BLOCKED = 0xc0000b0600000000n;
export const TDX_GPA_RANGE_ALREADY_BLOCKED = 0x00000b0700000000n;
export const TDX_TLB_TRACKING_NOT_DONE = 0xc0000b0800000000n;
export const TDX_EPT_INVALID_PROMOTE_CONDITIONS = 0xc0000b0900000000n;
export const TDX_PAGE_ALREADY_ACCEPTED = 0x00000b0a00000000n;
export const TDX_PAGE_SIZE_MISMATCH = 0xc0000b0b00000000n;
export const TDX_EPT_ENTRY_STATE_INCORRECT = 0xc0000b0d00000000n;
export const TDX_EPT_PAGE_NOT_FREE = 0xc0000b0e00000000n;

/** Operand IDs added into bits 31:0. */
export const OPERAND_RCX = 1n;
export const OPERAND_RDX = 2n;
export const OPERAND_R8 = 8n;
export const OPERAND_R9 = 9n;
export const OPERAND_TDR = 0x80n;
export const OPERAND_SEPT_TREE = 0x92n;
export const OPERAND_TD_EPOCH = 0xa9n;
export const OPERAND_OP_STATE = 0xacn;

const NAMES = new Map<bigint, string>([
  [TDX_SUCCESS, "SUCCESS"],
  [TDX_OPERAND_INVALID, "OPERAND_INVALID"],
  [TDX_OPERAND_ADDR_RANGE_ERROR, "OPERAND_ADDR_RANGE_ERROR"],
  [TDX_OPERAND_BUSY, "OPERAND_BUSY"],
  [TDX_PREVIOUS_TLB_EPOCH_BUSY, "PREVIOUS_TLB_EPOCH_BUSY"],
  [TDX_SYS_BUSY, "SYS_BUSY"],
  [TDX_SYS_INIT_NOT_PENDING, "SYS_INIT_NOT_PENDING"],
  [TDX_SYS_LP_INIT_DONE, "SYS_LP_INIT_DONE"],
  [TDX_SYS_NOT_READY, "SYS_NOT_READY"],
  [TDX_SYS_KEY_CONFIG_NOT_PENDING, "SYS_KEY_CONFIG_NOT_PENDING"],
  [TDX_SYS_LP_INIT_NOT_PENDING, "SYS_LP_INIT_NOT_PENDING"],
  [TDX_SYS_CONFIG_NOT_PENDING, "SYS_CONFIG_NOT_PENDING"],
  [TDX_KEY_CONFIGURED, "KEY_CONFIGURED"],
  [TDX_TDMR_ALREADY_INITIALIZED, "TDMR_ALREADY_INITIALIZED"],
  [TDX_INVALID_TDMR, "INVALID_TDMR"],
  [TDX_NON_ORDERED_TDMR, "NON_ORDERED_TDMR"],
  [TDX_TDMR_OUTSIDE_CMRS, "TDMR_OUTSIDE_CMRS"],
  [TDX_INVALID_PAMT, "INVALID_PAMT"],
  [TDX_PAMT_OUTSIDE_CMRS, "PAMT_OUTSIDE_CMRS"],
  [TDX_PAMT_OVERLAP, "PAMT_OVERLAP"],
  [TDX_INVALID_RESERVED_IN_TDMR, "INVALID_RESERVED_IN_TDMR"],
  [TDX_NON_ORDERED_RESERVED_IN_TDMR, "NON_ORDERED_RESERVED_IN_TDMR"],
  [TDX_OPERAND_BUSY_HOST_PRIORITY, "OPERAND_BUSY_HOST_PRIORITY"],
  [TDX_PAGE_METADATA_INCORRECT, "PAGE_METADATA_INCORRECT"],
  [TDX_TD_ASSOCIATED_PAGES_EXIST, "TD_ASSOCIATED_PAGES_EXIST"],
  [TDX_WBCACHE_NOT_COMPLETE, "WBCACHE_NOT_COMPLETE"],
  [TDX_NO_HKID_READY_TO_WBCACHE, "NO_HKID_READY_TO_WBCACHE"],
  [TDX_TD_FATAL, "TD_FATAL"],
  [TDX_TDCS_NOT_ALLOCATED, "TDCS_NOT_ALLOCATED"],
  [TDX_LIFECYCLE_STATE_INCORRECT, "LIFECYCLE_STATE_INCORRECT"],
  [TDX_OP_STATE_INCORRECT, "OP_STATE_INCORRECT"],
  [TDX_TD_KEYS_NOT_CONFIGURED, "TD_KEYS_NOT_CONFIGURED"],
  [TDX_TDCX_NUM_INCORRECT, "TDCX_NUM_INCORRECT"],
  [TDX_VCPU_STATE_INCORRECT, "VCPU_STATE_INCORRECT"],
  [TDX_TD_VMCS_FIELD_NOT_INITIALIZED, "TD_VMCS_FIELD_NOT_INITIALIZED"],
  [TDX_METADATA_FIELD_ID_INCORRECT, "METADATA_FIELD_ID_INCORRECT"],
  [TDX_METADATA_FIELD_NOT_WRITABLE, "METADATA_FIELD_NOT_WRITABLE"],
  [TDX_METADATA_FIELD_NOT_READABLE, "METADATA_FIELD_NOT_READABLE"],
  [TDX_VCPU_ASSOCIATED, "VCPU_ASSOCIATED"],
  [TDX_VCPU_NOT_ASSOCIATED, "VCPU_NOT_ASSOCIATED"],
  [TDX_FLUSHVP_NOT_DONE, "FLUSHVP_NOT_DONE"],
  [TDX_EPT_WALK_FAILED, "EPT_WALK_FAILED"],
  [TDX_EPT_ENTRY_NOT_PRESENT, "EPT_ENTRY_NOT_PRESENT"],
  [TDX_GPA_RANGE_NOT_BLOCKED, "GPA_RANGE_NOT_BLOCKED"],
  [TDX_GPA_RANGE_ALREADY_BLOCKED, "GPA_RANGE_ALREADY_BLOCKED"],
  [TDX_TLB_TRACKING_NOT_DONE, "TLB_TRACKING_NOT_DONE"],
  [TDX_EPT_INVALID_PROMOTE_CONDITIONS, "EPT_INVALID_PROMOTE_CONDITIONS"],
  [TDX_PAGE_ALREADY_ACCEPTED, "PAGE_ALREADY_ACCEPTED"],
  [TDX_PAGE_SIZE_MISMATCH, "PAGE_SIZE_MISMATCH"],
  [TDX_EPT_ENTRY_STATE_INCORRECT, "EPT_ENTRY_STATE_INCORRECT"],
  [TDX_EPT_PAGE_NOT_FREE, "EPT_PAGE_NOT_FREE"],
]);

/** The status classes by name, both ways (fault injection and scenario files read the names). */
export const TDX_STATUS = new StatusNames<bigint>("TDX status", NAMES);

const CLASS_MASK = 0xffffffff00000000n;

/** KVM's way to classify a status: mask off the operand ID. */
export function statusClass(s: bigint): bigint {
  return s & CLASS_MASK;
}

/**
 * KVM's `tdx_operand_busy()`: the status, operand ID masked off, is TDX_OPERAND_BUSY. Only that
 * one is contention KVM retries (-EBUSY, or `tdh_do_no_vcpus`); OPERAND_BUSY_HOST_PRIORITY and
 * PREVIOUS_TLB_EPOCH_BUSY are errors to KVM like any other (KVM_BUG_ON).
 */
export function tdxOperandBusy(s: bigint): boolean {
  return s !== TDX_SUCCESS && statusClass(s) === TDX_OPERAND_BUSY;
}

/** Any of the busy statuses: what the `busy` counts of the stats count. */
export function isBusy(s: bigint): boolean {
  // SUCCESS first: no bigint arithmetic (which allocates) for the common case.
  if (s === TDX_SUCCESS) return false;
  const c = statusClass(s);
  return (
    c === TDX_OPERAND_BUSY ||
    c === TDX_OPERAND_BUSY_HOST_PRIORITY ||
    c === TDX_PREVIOUS_TLB_EPOCH_BUSY
  );
}

/** Success, or a warning (class 0x0…): bit 63 clear. */
export function isOk(s: bigint): boolean {
  return s === TDX_SUCCESS || s >> 63n === 0n;
}

export function statusName(s: bigint): string {
  return TDX_STATUS.name(statusClass(s));
}

/** `0xC0000B0000000001 (EPT_WALK_FAILED|RCX)` */
export function formatStatus(s: bigint): string {
  const op = s & 0xffffffffn;
  const opName = op === 0n ? "" : `|${OPERAND_NAMES.get(op) ?? `0x${op.toString(16)}`}`;
  return `0x${s.toString(16).toUpperCase().padStart(16, "0")} (${statusName(s)}${opName})`;
}

const OPERAND_NAMES = new Map<bigint, string>([
  [OPERAND_RCX, "RCX"],
  [OPERAND_RDX, "RDX"],
  [OPERAND_R8, "R8"],
  [OPERAND_R9, "R9"],
  [OPERAND_TDR, "TDR"],
  [OPERAND_SEPT_TREE, "SEPT_TREE"],
  [OPERAND_TD_EPOCH, "TD_EPOCH"],
  [OPERAND_OP_STATE, "OP_STATE"],
]);
