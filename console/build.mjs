// Builds the console into dist/: one script (src/main.tsx and what it imports, preact included)
// and the page that loads it. The node embeds dist/ (runtime/node/build.rs).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.tsx"],
  bundle: true,
  minify: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  jsx: "automatic",
  jsxImportSource: "preact",
  outfile: "dist/console.js",
  logLevel: "warning",
});
copyFileSync("src/index.html", "dist/index.html");
copyFileSync("src/console.css", "dist/console.css");
