// Bundles the element (mozaiks-chat.js, what host pages embed), the runtime's own full page
// (page.js), and the React example host page (examples/react/dist/app.js, React bundled in, the
// element loaded from the runtime). Run through `npm run build`; scripts/_chatui.sh calls it when a
// source is newer.
import { build } from "esbuild";

const common = { bundle: true, format: "esm", target: "es2022", minify: true, sourcemap: false,
                 legalComments: "none", logLevel: "warning" };

await build({ ...common, entryPoints: { "mozaiks-chat": "src/index.ts", page: "src/page.ts" }, outdir: "dist" });

await build({
  ...common,
  entryPoints: ["../examples/react/app.jsx"],
  outfile: "../examples/react/dist/app.js",
  jsx: "automatic",
  nodePaths: ["node_modules"],  // React comes from the ChatUI's own dev dependencies
  define: { "process.env.NODE_ENV": '"production"' },
});
