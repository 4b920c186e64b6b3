/**
 * The containers backends are made in (`backend/containers.ts`): a host's holds the host-wide
 * parts, made once per host; a VM's holds its backend; later registrations shadow earlier ones,
 * which is how a test substitutes a part.
 */
import "reflect-metadata";
import {
  inject,
  injectable,
  instanceCachingFactory,
  type ClassProvider,
  type DependencyContainer,
} from "tsyringe";
import { describe, expect, it } from "vitest";
import {
  BACKEND,
  CLOCK,
  EVENTS,
  EventSink,
  FRAMES,
  HOST,
  Host,
  PluginError,
  Vm,
  backendSource,
  emptyBackendStats,
  parseScenarioText,
  runScenario,
  type Backend,
  type BackendRegistration,
  type Clock,
  type FrameAllocator,
  type TdpEvent,
} from "../src/testing.js";
import { MiB } from "./helpers.js";

/** A host-wide part: numbers handed out to the VMs of one host, as ASIDs or HKIDs are. */
class Ids {
  private next = 1;
  alloc(): number {
    return this.next++;
  }
}
const IDS = Symbol.for("test.Ids");

@injectable()
class Injected implements Backend {
  readonly name = "injected";
  readonly description = "a backend made by the container";
  readonly usesMirrorRoot = false;
  readonly hasPrivateMemory = false;
  readonly id: number;
  constructor(
    @inject(IDS) readonly ids: Ids,
    @inject(HOST) readonly host: Host,
    @inject(FRAMES) readonly frames: FrameAllocator,
  ) {
    this.id = ids.alloc();
  }
  stats() {
    return emptyBackendStats();
  }
}

/** Made with the run's clock and event bus. */
@injectable()
class RunParts extends Injected {
  constructor(
    @inject(IDS) ids: Ids,
    @inject(HOST) host: Host,
    @inject(FRAMES) frames: FrameAllocator,
    @inject(CLOCK) readonly clock: Clock,
    @inject(EVENTS) readonly events: EventSink,
  ) {
    super(ids, host, frames);
  }
}

function registration(
  cls: ClassProvider<Backend>["useClass"] = Injected,
): BackendRegistration & { hostsPrepared: number } {
  const reg = {
    name: "injected",
    description: "test",
    hostsPrepared: 0,
    register(c: DependencyContainer) {
      c.register(BACKEND, { useClass: cls });
    },
    registerHost(c: DependencyContainer) {
      reg.hostsPrepared++;
      c.register(IDS, { useFactory: instanceCachingFactory(() => new Ids()) });
    },
  };
  return reg;
}

const vmOn = (host: Host, backend: Backend) =>
  new Vm(host, { memory: 4 * MiB, gpaw: 48, vcpus: 1, hostPageLevel: 1 }, backend);

describe("a host's container", () => {
  it("holds the host and its frames, each host its own", () => {
    const a = new Host({ memory: 4 * MiB });
    const b = new Host({ memory: 8 * MiB });
    expect(a.container.resolve(HOST)).toBe(a);
    expect(a.container.resolve(FRAMES)).toBe(a.frames);
    expect(b.container.resolve(HOST)).toBe(b);
    expect(b.container.resolve(FRAMES).totalFrames).toBe(2 * a.frames.totalFrames);
  });

  it("a backend's host-wide parts are made once per host: VMs on one host share them, another host has its own", () => {
    const reg = registration();
    const src = backendSource(reg);
    const a = new Host({ memory: 64 * MiB });
    const b = new Host({ memory: 64 * MiB });
    const a1 = src.create(a) as Injected;
    const a2 = src.create(a) as Injected;
    const b1 = src.create(b) as Injected;
    expect(reg.hostsPrepared).toBe(2);
    expect(a1).not.toBe(a2);
    expect(a1.ids).toBe(a2.ids);
    expect(b1.ids).not.toBe(a1.ids);
    expect([a1.id, a2.id, b1.id]).toEqual([1, 2, 1]);
    expect(a1.host).toBe(a);
    expect(b1.frames).toBe(b.frames);
    vmOn(a, a1);
    vmOn(a, a2);
    vmOn(b, b1);
  });

  it("a part registered in a VM's container after the backend's shadows the host's, for that VM only", () => {
    const src = backendSource(registration());
    const host = new Host({ memory: 64 * MiB });
    const mine = new Ids();
    const own = src.create(host, (c) => c.register(IDS, { useValue: mine })) as Injected;
    const shared = src.create(host) as Injected;
    expect(own.ids).toBe(mine);
    expect(shared.ids).not.toBe(mine);
    expect(shared.id).toBe(1);
  });
});

describe("a run's containers", () => {
  const SCN = `
name: containers
vm: { memory: 4MiB, vcpus: 1 }
vcpus:
  - - { op: access, gpa: 0x1000, write: true }
`;

  it("the backend is handed the run's host, clock and event bus", () => {
    const r = runScenario(parseScenarioText(SCN, "containers.yaml"), {
      backend: backendSource(registration(RunParts)),
    });
    const be = r.vm.backend as RunParts;
    expect(be.host).toBe(r.host);
    expect(be.clock).toBe(r.vm.clock);
    expect(be.events).toBe(r.vm.events);
  });

  it("a recording event sink substituted in the host's container receives every event of the run", () => {
    const seen: TdpEvent[] = [];
    const scn = parseScenarioText(SCN, "containers.yaml");
    const r = runScenario(scn, {
      backend: backendSource(registration(RunParts)),
      configureHost: (c) =>
        c.register(EVENTS, {
          useFactory: instanceCachingFactory((x) => {
            const sink = new EventSink(x.resolve(CLOCK));
            sink.subscribe((e) => seen.push(e));
            return sink;
          }),
        }),
    });
    expect((r.vm.backend as RunParts).events).toBe(r.vm.events);
    expect(seen.some((e) => e.type === "fault")).toBe(true);
    const plain: TdpEvent[] = [];
    runScenario(scn, {
      backend: backendSource(registration(RunParts)),
      onEvent: (e) => plain.push(e),
    });
    expect(seen).toEqual(plain);
  });
});

describe("a plugin's registration answers for itself", () => {
  const plugin = { name: "injected", origin: "/plugins/p.js", strict: true };

  it("registerHost that throws: one PluginError naming it", () => {
    const reg = {
      ...registration(),
      registerHost: () => {
        throw new Error("no platform here");
      },
    };
    const host = new Host({ memory: 64 * MiB });
    expect(() => backendSource(reg, plugin).create(host)).toThrow(PluginError);
    expect(() => backendSource(reg, plugin).create(new Host({ memory: 64 * MiB }))).toThrow(
      "plugin 'injected' (/plugins/p.js): registerHost() threw Error: no platform here",
    );
  });

  it("a dependency nobody registered: resolving its backend is named, not its constructor", () => {
    const reg = { ...registration(), registerHost: undefined };
    expect(() => backendSource(reg, plugin).create(new Host({ memory: 64 * MiB }))).toThrow(
      /^plugin 'injected' \(\/plugins\/p\.js\): resolving its backend threw/,
    );
  });
});
