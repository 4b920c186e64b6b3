#!/usr/bin/env node
import "reflect-metadata";
import { main } from "./main.js";
import { processIo } from "./io.js";

main(process.argv.slice(2), processIo).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`tdpemu: internal error: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exitCode = 70;
  },
);
