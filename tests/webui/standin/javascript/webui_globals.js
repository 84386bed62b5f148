// Stand-in of the WebUI page globals that javascript/trainplan.js calls (the WebUI's JavaScript cannot
// be installed). Each mirrors AUTOMATIC1111 v1.10.1:
//   gradioApp, onUiLoaded and the observer that runs its callbacks  <- script.js
//   updateInput                                                      <- javascript/ui.js
//   requestProgress                                                  <- javascript/progressbar.js
// requestProgress alone differs: instead of polling /internal/progress (which this stand-in server
// does not have) it records what it was asked to follow, in window.stpProgressCalls.
// The WebUI loads its scripts as <script> tags, whose top-level functions are globals; this file is
// injected as a browser init script, which runs in a function scope: hence the window.* assignments.
window.gradioApp = function gradioApp() {
    const elems = document.getElementsByTagName('gradio-app');
    const elem = elems.length == 0 ? document : elems[0];
    if (elem !== document) {
        elem.getElementById = function(id) {
            return document.getElementById(id);
        };
    }
    return elem.shadowRoot ? elem.shadowRoot : elem;
};

var uiLoadedCallbacks = [];
var executedOnLoaded = false;

window.onUiLoaded = function onUiLoaded(callback) {
    uiLoadedCallbacks.push(callback);
};

document.addEventListener("DOMContentLoaded", function() {
    var mutationObserver = new MutationObserver(function() {
        if (!executedOnLoaded && gradioApp().querySelector('#txt2img_prompt')) {
            executedOnLoaded = true;
            uiLoadedCallbacks.forEach(function(callback) {
                try {
                    callback();
                } catch (e) {
                    console.error("error running callback", callback, ":", e);
                }
            });
        }
    });
    mutationObserver.observe(gradioApp(), {childList: true, subtree: true});
});

window.updateInput = function updateInput(target) {
    let e = new Event("input", {bubbles: true});
    Object.defineProperty(e, "target", {value: target});
    target.dispatchEvent(e);
};

window.stpProgressCalls = [];

window.requestProgress = function requestProgress(id_task, progressbarContainer, gallery, atEnd, onProgress) {
    window.stpProgressCalls.push({id: id_task, container: progressbarContainer ? progressbarContainer.id : null,
                                  preview: gallery ? gallery.id : null});
};
