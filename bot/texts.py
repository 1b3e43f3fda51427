"""Every sentence the bot says, in English and Chinese. Handlers pick the language with
`texts_for(language_code)` and never hold user-facing text themselves."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.events import FailureReason, Stage


@dataclass(frozen=True)
class Texts:
    help: str
    not_allowed: str
    send_model_first: str
    too_big: str
    too_big_admin_hint: str
    not_a_document: str
    text_outside_dialogue: str
    downloading: str
    bad_model: str
    summary_title: str
    suggested_inputs: str
    suggested_outputs: str
    readiness: str
    ready_ok: str
    ready_flex: str
    ready_unsupported: str
    ready_later: str
    button_convert: str
    button_inputs: str
    button_outputs: str
    button_targets: str
    button_quant: str
    button_done: str
    button_back: str
    button_cancel: str
    choose_inputs: str
    choose_outputs: str
    choose_targets: str
    choose_quant: str
    menu_expired: str
    ask_shape: str
    bad_shape: str
    ask_samples: str  # int8: the next document is the calibration set
    samples_too_big: str
    bad_samples: str
    samples_taken: str
    samples_classes: str
    ask_input_range: str
    int8_tflite_only: str
    agreement: str
    nodes_title: str
    nodes_none: str
    quota_reached: str
    queued: str
    stage: str
    stages: dict[Stage, str]  # every converter stage, by its id
    sending: str
    succeeded: str
    partial: str
    failed: str
    cancelled: str
    interrupted: str
    worker_lost: str
    waiting_for_converter: str
    reasons: dict[FailureReason, str]  # for failed: why, with the figures a JobEvent's reason_args name
    nothing_to_cancel: str
    cancelled_dialogue: str
    job_not_found: str
    job_not_cancellable: str
    jobs_title: str
    jobs_none: str
    job_line: str
    files_expired: str
    caption: str
    caption_mismatch: str
    quant_chart: str
    advice_quantized: str
    advice_float32: str
    culprit: str
    withheld: str
    graph_faithful: str
    graph_unfaithful: str
    report: str
    not_admin: str
    stats: str
    cleanup_done: str
    error: str


EN = Texts(
    help=(
        "Send me a TensorFlow model as a file: a frozen graph (.pb/.pbtxt), a SavedModel (.zip or .tar.gz), "
        "a Keras model (.h5/.keras), a TF.js graph model (model.json and its .bin files in one .zip) or a TF1 "
        "checkpoint (.meta, .index and .data files in one .zip). I list what is inside, suggest the input and "
        "output nodes, convert it to TensorFlow Lite and TensorFlow.js (or back to a frozen graph or SavedModel), "
        "check the results against the original and send the files back.\n\n"
        "Commands:\n"
        "/nodes [text] – list the current model's nodes, filtered by name or op\n"
        "/convert [tflite|tfjs|pb|savedmodel|all] [in=a,b] [out=c,d] [shape=name:1,224,224,3] "
        "[quant=none|float16|dynamic|uint8|uint16|auto|compare]\n"
        "quant=auto tries every quantization and sends, per target, the smallest file that passes its check; "
        "quant=compare sends them all; both with a chart of size against error\n"
        "/jobs – your recent jobs; /job N – one job, with its files\n"
        "/cancel [N] – cancel job N, or else your newest queued or running job, or else the current dialogue "
        "(each job's status message has its own Cancel button)\n\n"
        "Example: send posenet.pb, then /convert tflite out=heatmap,offset_2 quant=float16"
    ),
    not_allowed="Sorry, this bot is private. Ask its owner to add your id ({user_id}).",
    send_model_first="Send me a model first (a .pb, a SavedModel .zip/.tar.gz, or a Keras .h5/.keras file).",
    too_big="This file is {size}; the largest model I accept is {limit}.",
    too_big_admin_hint=(
        " Admin: the public Bot API downloads at most 20 MB. Run a self-hosted Bot API server, set "
        "CONVBOT_API_URL to it with CONVBOT_LOCAL_API=1, and raise CONVBOT_MAX_UPLOAD_MB."
    ),
    not_a_document="Please send the model as a file (a document), not as a photo, sticker or other media.",
    text_outside_dialogue="Send me a model file, or /help to see what I can do.",
    downloading="Received {name}; reading it…",
    bad_model="I cannot use {name}: {reason}",
    summary_title="{name}: {format}, {size}, {count} {unit}\nMain ops: {ops}",
    suggested_inputs="Suggested inputs:",
    suggested_outputs="Suggested outputs:",
    readiness="Readiness: TFLite {tflite}; TF.js {tfjs}",
    ready_ok="ok",
    ready_flex="needs the Flex delegate ({ops})",
    ready_unsupported="unsupported ops: {ops}",
    ready_later="checked when converting",
    button_convert="Convert now",
    button_inputs="Choose inputs",
    button_outputs="Choose outputs",
    button_targets="Targets: {value}",
    button_quant="Quantization: {value}",
    button_done="Done",
    button_back="Back",
    button_cancel="Cancel",
    choose_inputs="Choose the inputs ({count} chosen). Type part of a name to search. Page {page}/{pages}.",
    choose_outputs="Choose the outputs ({count} chosen). Type part of a name to search. Page {page}/{pages}.",
    choose_targets="Choose what to make:",
    choose_quant="Choose the weight quantization:",
    menu_expired="This menu has expired; send /convert or the model again.",
    ask_shape="Input {name} has unknown dimensions {shape}. Reply with the full shape, like 1,224,224,3 (or scalar).",
    bad_shape="That is not a shape. Reply with whole numbers separated by commas, like 1,224,224,3.",
    ask_samples=(
        "{quant} is calibrated on samples of your model's inputs. Send them as a file: a .zip of 20–500 images "
        "(one folder per class gives a top-1 figure) or an .npz of input arrays, up to {limit}. /cancel to stop."
    ),
    samples_too_big="This file is {size}; calibration samples may be at most {limit}. Send fewer, or /cancel.",
    bad_samples="I cannot calibrate on {name}: {reason}. Send another file, or /cancel.",
    samples_taken="Calibrating on {count} samples from {name}{classes}.",
    samples_classes=" in {count} class folders",
    ask_input_range=(
        "Your model takes floats: how do its inputs see pixels? Choose the range that 0..255 maps to "
        "(or /convert range=0,1)."
    ),
    int8_tflite_only=(
        "{quant} is for TFLite only (TF.js has no integer kernels): choose the target tflite, or "
        "/convert quant=tflite:{quant},tfjs:uint8."
    ),
    agreement="\nTop-1 agrees with your model on {percent:.0f} % of your {images} images.",
    nodes_title="Nodes of {name}{filter} ({count}), page {page}/{pages}:",
    nodes_none="No node matches “{text}”.",
    quota_reached="You have run {limit} jobs today, the daily limit. You can go on after {when} (UTC).",
    queued="Job #{job_id} queued (position {position}).",
    stage="Job #{job_id}: {stage}…",
    stages={
        Stage.LOADING: "loading the model",
        Stage.LOAD_TENSORFLOW: "loading the model into TensorFlow",
        Stage.LOAD: "loading the model into TensorFlow",
        Stage.CONVERT_TFLITE: "converting to TFLite",
        Stage.VALIDATE: "checking the results",
        Stage.CONVERT_TFJS: "converting to TF.js",
        Stage.CONVERT_TFJS_LAYERS: "converting to a TF.js layers model",
        Stage.WRITE_PB: "writing the frozen graph",
        Stage.WRITE_SAVED_MODEL: "writing the SavedModel",
    },
    sending="Job #{job_id}: sending {name}…",
    succeeded="Job #{job_id} done.",
    partial="Job #{job_id} done, but not every file is sent: {reason}",
    failed="Job #{job_id} failed: {reason}",
    cancelled="Job #{job_id} cancelled.",
    interrupted="Job #{job_id} was interrupted by a restart; it is queued again and will run shortly.",
    worker_lost="Job #{job_id}: the converter running it stopped answering; it is queued again for another one.",
    waiting_for_converter="Job #{job_id} waits for a converter: none is running right now; it starts when one joins.",
    reasons={
        FailureReason.CONVERSION_ERROR: "{message}",
        FailureReason.TIMEOUT: "the conversion took longer than {seconds:g} s and was stopped",
        FailureReason.MEMORY: "the conversion used more than {mb} MB of memory and was stopped",
        FailureReason.CRASH: "the converter crashed ({cause})",
        FailureReason.INTERRUPTED_TWICE: "it was interrupted twice by restarts; send the model again.",
        FailureReason.CANCELLED: "cancelled",
    },
    nothing_to_cancel="Nothing to cancel.",
    cancelled_dialogue="Cancelled.",
    job_not_found="Job {job} not found.",
    job_not_cancellable="Job {job} is not one of yours that is queued or running: nothing to cancel.",
    jobs_title="Your recent jobs:",
    jobs_none="You have no jobs yet.",
    job_line="#{job_id} {model} → {targets}: {status}, {age} ago",
    files_expired="The files of job #{job_id} have expired; send the model again.",
    caption="{name}: {size}, weights {quant}. Check: {check}",
    caption_mismatch=(
        "⚠ This file does not compute what your model computes: its outputs differ by up to {percent} of their "
        "range (allowed: {allowed}). {advice}{culprit}\n"
    ),
    quant_chart="Size against error of each quantization (dashed: the tolerances; circled: the smallest file that "
    "passes).\n{reasons}",
    advice_quantized="Stored as {quant}, this model's outputs move that much: keep float32, or try quant={others}.",
    advice_float32="Its runtime computes differently from TensorFlow for this model; the report says where.",
    culprit=" Where: {culprit}.",
    withheld="Not sent: {target} ({reason}).",
    graph_faithful="Conversion: the graph rebuilt from your TF.js model, run in TensorFlow, matches it "
    "(up to {error} of scale, {output}).",
    graph_unfaithful="Conversion: the graph rebuilt from your TF.js model departs from it by {error} of scale "
    "({output}): convbot's fault; please report it.",
    report="Job #{job_id} report\nTimings: {timings}\n{warnings}{manifest}",
    not_admin="This command is for admins.",
    stats="Users: {users}\nJobs: {jobs}\nDisk used: {disk}",
    cleanup_done="Cleanup: {summary}",
    error="Something went wrong on my side; it has been logged. Please try again.",
)

ZH = Texts(
    help=(
        "把 TensorFlow 模型作为文件发给我：冻结图（.pb/.pbtxt）、SavedModel（.zip 或 .tar.gz）、Keras 模型"
        "（.h5/.keras）、TF.js 图模型（model.json 和 .bin 文件打包成一个 .zip）或 TF1 检查点（.meta、.index、.data "
        "文件打包成一个 .zip）。我会列出其中内容，建议输入和输出节点，转换为 TensorFlow Lite 和 TensorFlow.js"
        "（或冻结图、SavedModel），"
        "用原模型核对结果，再把文件发回给你。\n\n"
        "命令：\n"
        "/nodes [文字] – 列出当前模型的节点，可按名称或算子筛选\n"
        "/convert [tflite|tfjs|pb|savedmodel|all] [in=a,b] [out=c,d] [shape=name:1,224,224,3] "
        "[quant=none|float16|dynamic|uint8|uint16|auto|compare]\n"
        "quant=auto 尝试每种量化，并为每个目标发送通过核对的最小文件；quant=compare 发送全部文件；"
        "两者都附大小与误差的对比图\n"
        "/jobs – 最近的任务；/job N – 查看一个任务及其文件\n"
        "/cancel [N] – 取消任务 N；不写 N 则取消你最新的排队中或运行中的任务；没有任务时取消当前对话"
        "（每个任务的状态消息都有自己的取消按钮）\n\n"
        "示例：发送 posenet.pb，然后 /convert tflite out=heatmap,offset_2 quant=float16"
    ),
    not_allowed="抱歉，这是私有机器人。请联系管理员添加你的 id（{user_id}）。",
    send_model_first="请先发送模型文件（.pb、SavedModel 的 .zip/.tar.gz，或 Keras 的 .h5/.keras）。",
    too_big="该文件大小为 {size}；可接受的最大模型为 {limit}。",
    too_big_admin_hint=(
        " 管理员：公共 Bot API 最多下载 20 MB。请自建 Bot API 服务器，将 CONVBOT_API_URL 指向它并设置 "
        "CONVBOT_LOCAL_API=1，然后调高 CONVBOT_MAX_UPLOAD_MB。"
    ),
    not_a_document="请以文件（document）形式发送模型，而不是图片、贴纸或其他媒体。",
    text_outside_dialogue="请发送模型文件，或发送 /help 查看用法。",
    downloading="已收到 {name}，正在读取…",
    bad_model="无法使用 {name}：{reason}",
    summary_title="{name}：{format}，{size}，{count} 个{unit}\n主要算子：{ops}",
    suggested_inputs="建议的输入：",
    suggested_outputs="建议的输出：",
    readiness="可转换性：TFLite {tflite}；TF.js {tfjs}",
    ready_ok="正常",
    ready_flex="需要 Flex 委托（{ops}）",
    ready_unsupported="不支持的算子：{ops}",
    ready_later="转换时检查",
    button_convert="立即转换",
    button_inputs="选择输入",
    button_outputs="选择输出",
    button_targets="目标：{value}",
    button_quant="量化：{value}",
    button_done="完成",
    button_back="返回",
    button_cancel="取消",
    choose_inputs="选择输入（已选 {count} 个）。输入部分名称可搜索。第 {page}/{pages} 页。",
    choose_outputs="选择输出（已选 {count} 个）。输入部分名称可搜索。第 {page}/{pages} 页。",
    choose_targets="选择要生成的格式：",
    choose_quant="选择权重量化方式：",
    menu_expired="该菜单已过期；请重新发送 /convert 或模型。",
    ask_shape="输入 {name} 的维度 {shape} 未知。请回复完整形状，例如 1,224,224,3（标量请回复 scalar）。",
    bad_shape="这不是有效的形状。请回复以逗号分隔的整数，例如 1,224,224,3。",
    ask_samples=(
        "{quant} 需要用你的模型输入样本来校准。请以文件形式发送：包含 20–500 张图片的 .zip"
        "（每个类别一个文件夹，可得到 top-1 一致率），或输入数组的 .npz，不超过 {limit}。发送 /cancel 取消。"
    ),
    samples_too_big="该文件大小为 {size}；校准样本最多 {limit}。请少发一些，或发送 /cancel。",
    bad_samples="无法用 {name} 校准：{reason}。请发送另一个文件，或发送 /cancel。",
    samples_taken="使用 {name} 中的 {count} 个样本校准{classes}。",
    samples_classes="（{count} 个类别文件夹）",
    ask_input_range="你的模型输入为浮点数：像素如何映射到输入？请选择 0..255 对应的范围（或 /convert range=0,1）。",
    int8_tflite_only=(
        "{quant} 仅适用于 TFLite（TF.js 没有整数内核）：请选择目标 tflite，"
        "或 /convert quant=tflite:{quant},tfjs:uint8。"
    ),
    agreement="\n在你的 {images} 张图片上，top-1 与原模型一致的比例为 {percent:.0f} %。",
    nodes_title="{name} 的节点{filter}（共 {count} 个），第 {page}/{pages} 页：",
    nodes_none="没有节点匹配“{text}”。",
    quota_reached="你今天已运行 {limit} 个任务，达到每日上限。可在 {when}（UTC）之后继续。",
    queued="任务 #{job_id} 已排队（第 {position} 位），状态：queued。",
    stage="任务 #{job_id}：{stage}…",
    stages={
        Stage.LOADING: "加载模型",
        Stage.LOAD_TENSORFLOW: "将模型载入 TensorFlow",
        Stage.LOAD: "将模型载入 TensorFlow",
        Stage.CONVERT_TFLITE: "转换为 TFLite",
        Stage.VALIDATE: "核对结果",
        Stage.CONVERT_TFJS: "转换为 TF.js",
        Stage.CONVERT_TFJS_LAYERS: "转换为 TF.js 层模型",
        Stage.WRITE_PB: "写出冻结图",
        Stage.WRITE_SAVED_MODEL: "写出 SavedModel",
    },
    sending="任务 #{job_id}：正在发送 {name}…",
    succeeded="任务 #{job_id} 完成，状态：succeeded。",
    partial="任务 #{job_id} 完成（partial），但并非所有文件都已发送：{reason}",
    failed="任务 #{job_id} 失败（failed）：{reason}",
    cancelled="任务 #{job_id} 已取消，状态：cancelled。",
    interrupted="任务 #{job_id} 因重启被中断（interrupted），已重新排队，很快会运行。",
    worker_lost="任务 #{job_id}：运行它的转换程序已无响应，已重新排队，将由另一个转换程序运行。",
    waiting_for_converter="任务 #{job_id} 正在等待转换程序：目前没有转换程序在运行，一旦有转换程序加入就会开始。",
    reasons={
        FailureReason.CONVERSION_ERROR: "{message}",
        FailureReason.TIMEOUT: "转换耗时超过 {seconds:g} 秒，已被停止",
        FailureReason.MEMORY: "转换占用内存超过 {mb} MB，已被停止",
        FailureReason.CRASH: "转换程序崩溃（{cause}）",
        FailureReason.INTERRUPTED_TWICE: "两次因重启被中断；请重新发送模型。",
        FailureReason.CANCELLED: "已取消",
    },
    nothing_to_cancel="没有可取消的内容。",
    cancelled_dialogue="已取消。",
    job_not_found="未找到任务 {job}。",
    job_not_cancellable="任务 {job} 不是你的排队中或运行中的任务：没有可取消的内容。",
    jobs_title="你最近的任务：",
    jobs_none="你还没有任务。",
    job_line="#{job_id} {model} → {targets}：{status}，{age}前",
    files_expired="任务 #{job_id} 的文件已过期（expired）；请重新发送模型。",
    caption="{name}：{size}，权重 {quant}。核对：{check}",
    caption_mismatch=(
        "⚠ 此文件的计算结果与您的模型不一致：输出最多偏离其范围的 {percent}（允许：{allowed}）。{advice}{culprit}\n"
    ),
    quant_chart="各量化方式的大小与误差（虚线：容差；圆圈：通过核对的最小文件）。\n{reasons}",
    advice_quantized="以 {quant} 存储使该模型的输出偏离这么多：请保留 float32，或尝试 quant={others}。",
    advice_float32="对该模型，其运行时的计算与 TensorFlow 不同；报告中写明了位置。",
    culprit="位置：{culprit}。",
    withheld="未发送：{target}（{reason}）。",
    graph_faithful=(
        "转换：由您的 TF.js 模型重建的计算图在 TensorFlow 中运行，与原模型一致（最多 {error} 的范围，{output}）。"
    ),
    graph_unfaithful=(
        "转换：由您的 TF.js 模型重建的计算图与原模型相差 {error} 的范围（{output}）：这是 convbot 的问题，请报告。"
    ),
    report="任务 #{job_id} 报告\n耗时：{timings}\n{warnings}{manifest}",
    not_admin="此命令仅限管理员。",
    stats="用户：{users}\n任务：{jobs}\n磁盘占用：{disk}",
    cleanup_done="清理：{summary}",
    error="我这边出了问题，已记录。请重试。",
)


def texts_for(language_code: str | None) -> Texts:
    """Chinese for users whose Telegram language is zh*, English otherwise."""
    return ZH if (language_code or "").lower().startswith("zh") else EN
