/**
 * @tdpemu/backend-sev: package skeleton. The backend itself is built by its own issue; until
 * then this package registers nothing, and `tdpemu backends` does not list it.
 */
export const registrations: readonly never[] = [];
