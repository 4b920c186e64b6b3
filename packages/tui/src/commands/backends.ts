/** `tdpemu backends [--plugin module]...`: the registered backends, plugins included. */
import { parseArgs } from "node:util";
import { builtinRegistry, loadPlugins } from "../registry.js";
import { UsageError } from "../usage-error.js";
import type { Io } from "../io.js";

export async function backendsCommand(args: string[], io: Io): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: { plugin: { type: "string", multiple: true }, json: { type: "boolean" } },
    }));
  } catch (e) {
    throw new UsageError(`backends: ${(e as Error).message.split("\n")[0]}`);
  }
  const registry = builtinRegistry();
  await loadPlugins(registry, values.plugin ?? []);
  const list = registry.list();
  if (values.json) io.out(JSON.stringify(list, null, 2));
  else
    for (const b of list)
      io.out(
        `${b.name.padEnd(8)} ${b.description}${b.origin === "built-in" ? "" : `  (${b.origin})`}`,
      );
  return 0;
}
