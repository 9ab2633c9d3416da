// Bundles the element (mozaiks-chat.js, what host pages embed) and the runtime's own full page
// (page.js). Run through `npm run build`; scripts/_chatui.sh calls it when a source is newer.
import { build } from "esbuild";

await build({
  entryPoints: { "mozaiks-chat": "src/index.ts", page: "src/page.ts" },
  outdir: "dist",
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: false,
  legalComments: "none",
  logLevel: "warning",
});
