// ft studio's page: plain DOM code over the JSON API (docs/studio.md), in ES modules, no build step. Every
// view reads the server; the page keeps only what the user is composing and which run is open.
//   util.js      DOM building, the API with the page's token, messages, formats, tabs
//   compose.js   Compose and Data        runs.js   Runs, the run view, Compare
//   finish.js    the run view's export and push (jobs running the CLI)
//   chat.js      Chat                    chart.js  the SVG loss chart    markdown.js  card and log text
import * as chat from "./chat.js";
import * as compose from "./compose.js";
import * as finish from "./finish.js";
import * as runs from "./runs.js";
import {showTab} from "./util.js";

for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
runs.init();
finish.init();
chat.init();
compose.init();
