/**
 * A plugin as an author outside the workspace writes it: one .mjs file in a folder without
 * node_modules, importing the backend SDK and tsyringe, which the command links to its own.
 *
 * The flush past `limit` is a KVM bug. The limit is the plugin's own host-wide injectable (one
 * per host, registered by `registerHost`), and the host's frames come by the SDK's `FRAMES`
 * token: both are injected into the backend's constructor by the command's container.
 * Decorators are applied by hand (a plain .mjs file has no decorator syntax), with `inject` from
 * tsyringe and `injectable` from the SDK: the two must be one tsyringe for this to work. Its
 * walk pane title says how many frames it was handed.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";

/** Writes the plugin, registered as `name`, into `dir`; returns its path. */
export function writeFlushLimitPlugin(dir: string, name: string, limit: number): string {
  const path = join(dir, `${name}.mjs`);
  writeFileSync(
    path,
    `
import { BACKEND, CallCounts, FRAMES, KvmBug, emptyBackendStats, injectable, instanceCachingFactory } from "@tdpemu/backend-sdk";
import { inject } from "tsyringe";

class Limit {
  value = ${limit};
}
const LIMIT = "${name}.limit";

class FlushLimitBackend {
  name = "${name}";
  description = "test plugin: a KVM bug at the flush past its limit";
  usesMirrorRoot = false;
  hasPrivateMemory = false;
  calls = new CallCounts(["FLUSH"]);
  constructor(limit, frames) {
    this.limit = limit.value;
    this.frames = frames.totalFrames;
  }
  flushTlb() {
    if (this.calls.add(0) > this.limit) {
      throw new KvmBug("${name}: flush " + this.calls.get(0) + " is past the limit of " + this.limit + " (host of " + this.frames + " frames)");
    }
  }
  walkTitle() {
    return "${name} EPT on a host of " + this.frames + " frames";
  }
  stats() { return { ...emptyBackendStats(), calls: this.calls.record() }; }
}
inject(LIMIT)(FlushLimitBackend, undefined, 0);
inject(FRAMES)(FlushLimitBackend, undefined, 1);
injectable()(FlushLimitBackend);

export const registration = {
  name: "${name}",
  description: "test plugin: a KVM bug at the flush past its limit",
  registerHost(c) {
    c.register(LIMIT, { useFactory: instanceCachingFactory(() => new Limit()) });
  },
  register(c) {
    c.register(BACKEND, { useClass: FlushLimitBackend });
  },
};
`,
  );
  return path;
}
