"""Where an EvDistill training step goes, against a supervised step measured in the same run.

    python bench/bench_train_step.py [--config config/demo.yaml] [--repeats 5] [--threads 2]

Builds the config's student (with the E2A reconstruction head), a teacher of the same
architecture and the A2E generator on random inputs of the config's crop and batch size, and
times (median of --repeats, after one warm-up) a supervised step, a full EvDistill step
(all loss terms, as distill.methods.EvDistill: the E2A head reconstructs the real half only), the
same step with the head on both halves (before), and its parts. "student alone, batch 2B" is the
floor of any step that trains the student on real and A2E-crafted events. Ratios are to the supervised
step of the same run: quote those, not the milliseconds (machines differ).

The second table runs the package's own KD / EvDistill steps (distill.methods, as training does)
with the teacher live (run on every batch) and with its outputs cached (student.teacher_outputs:
computed once per training frame, read with the batch), for the config's teacher and for a larger
teacher (DeepLabV3+ ResNet-50, --big-teacher-backbone), the size of a network brought on a card.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "config" / "demo.yaml"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--big-teacher-backbone", default="resnet50")
    args = ap.parse_args()

    import torch

    from evdistill_ros.distill import losses
    from evdistill_ros.distill.config import load_config
    from evdistill_ros.distill.methods import build_net
    from evdistill_ros.models import build_a2e

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    model, st = cfg.model, cfg.student
    b = int(cfg.train.batch_size)
    h, w = cfg.augment.crop or (120, 160)
    c, k = 3, int(model.num_classes)
    student = build_net(model, c, True)
    teacher = build_net(model, 1, False).eval().requires_grad_(False)
    a2e = build_a2e(in_channels=1, out_channels=c, activation="none")
    ev, aps, label = torch.rand(b, c, h, w), torch.rand(b, 1, h, w), torch.randint(0, k, (b, h, w))
    opt = torch.optim.SGD(list(student.parameters()) + list(a2e.parameters()), lr=1e-3)
    T, nodes = float(st.temperature), int(st.affinity_nodes)

    def supervised() -> None:
        opt.zero_grad()
        losses.cross_entropy(student(ev), label).backward()
        opt.step()

    def evdistill(reconstruct: int | None = b) -> None:
        opt.zero_grad()
        with torch.no_grad():
            t_out = teacher(aps, return_features=True)
        fake = a2e(aps)
        out = student(torch.cat([ev, fake.detach()]), return_features=True, reconstruct=reconstruct)
        loss = (losses.reconstruction_loss(fake, ev) + losses.reconstruction_loss(out["reconstruction"][:b], aps)
                + losses.pixel_kd(out["logits_lowres"][:b], t_out["logits_lowres"], T)
                + losses.affinity_kd(out["aspp"][:b], t_out["aspp"], nodes)
                + losses.pixel_kd(out["logits_lowres"][b:], t_out["logits_lowres"], T))
        loss.backward()
        opt.step()

    def teacher_forward() -> None:
        with torch.no_grad():
            teacher(aps, return_features=True)

    def a2e_step() -> None:
        opt.zero_grad()
        losses.reconstruction_loss(a2e(aps), ev).backward()

    def student_heads(x: torch.Tensor, head: bool = True):
        def run() -> None:
            opt.zero_grad()
            out = student(x, return_features=True, reconstruct=None if head else 0)
            (out["logits"].mean() + (out["reconstruction"].mean() if head else 0)).backward()
        return run

    def timed(fn) -> float:
        fn()
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    rows = [("supervised step (reference)", timed(supervised)),
            ("EvDistill step, all terms (E2A head on the real half, as trained)", timed(evdistill)),
            ("EvDistill step, E2A head on both halves (before)", timed(lambda: evdistill(reconstruct=None))),
            ("  teacher forward", timed(teacher_forward)), ("  A2E generator forward + backward", timed(a2e_step)),
            ("  student + E2A head, batch B, forward + backward", timed(student_heads(ev))),
            ("  student + E2A head, batch 2B (real + crafted)", timed(student_heads(torch.cat([ev, ev])))),
            ("  student alone, batch 2B (floor: real + crafted)", timed(student_heads(torch.cat([ev, ev]), head=False)))]
    ref = rows[0][1]
    print(f"\n{model.backbone} width {model.width_mult}, batch {b}, crop {h}x{w}, {args.threads} threads, "
          f"median of {args.repeats}")
    print("| part | ms | x supervised step |")
    print("|---|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {1e3 * t:.1f} | {t / ref:.2f} |")
    # what any step with this method's maths must do at least, with the generator and the head free
    floor = rows[3][1] + rows[7][1]
    print(f"| floor: teacher forward + student alone at 2B (generator and head free) | {1e3 * floor:.1f} | "
          f"{floor / ref:.2f} |")

    # the package's own steps, teacher live against teacher outputs cached
    from evdistill_ros.distill.methods import LossContext, Networks, method_for
    from evdistill_ros.distill.teacher import TeacherView
    from evdistill_ros.models.card import NetworkCard

    def view(backbone: str) -> TeacherView:
        net = build_net(model.replace(backbone=backbone, width_mult=model.width_mult if backbone == model.backbone
                                      else None), 1, False)
        card = NetworkCard(arch="deeplabv3plus", in_channels=1, num_classes=k,
                           preprocessing={"scale": "auto", "channels": "exact"})
        return TeacherView(net, card, None, T, torch.device("cpu"))

    soft = torch.randn(b, k + 1, h, w)
    soft[:, -1] = 1.0  # the validity map the dataset adds
    method_rows = []
    for tname, tv in (("config's teacher", view(model.backbone)),
                      (f"DeepLabV3+ {args.big_teacher_backbone} teacher", view(args.big_teacher_backbone))):
        for mname in ("kd", "evdistill"):
            method = method_for("student", mname, False, st)
            nets = Networks(net=student, a2e=a2e if mname == "evdistill" else None, teacher=tv)

            def step(cached: bool, method=method, nets=nets) -> None:
                opt.zero_grad()
                terms = method.loss_terms(nets, LossContext(), ev, aps, label, soft if cached else None)
                sum(method.weights[n] * v for n, v in terms.items()).backward()
                opt.step()
            live, cached = timed(lambda: step(False)), timed(lambda: step(True))
            method_rows.append((f"{mname} step, {tname}", live, cached))
    print("\n| step (distill.methods) | teacher live: ms | x supervised | teacher outputs cached: ms | x supervised "
          "| live / cached |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, live, cached in method_rows:
        print(f"| {name} | {1e3 * live:.1f} | {live / ref:.2f} | {1e3 * cached:.1f} | {cached / ref:.2f} | "
              f"{live / cached:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
