//! The weight layouts of GPT matrices: int4 and offset-binary int8 against plain int8 of the
//! same values (bit-identical logits), their loader checks, and `first_non_offset_matrix`.

use super::*;

fn int4_pair(m: &(Vec<u8>, Vec<u8>), cols: usize) -> [(Vec<u8>, Vec<u8>); 2] {
    let q: Vec<i8> = m.0.iter().map(|&b| (b as i8) >> 4).collect();
    let s = f32s(m.1.chunks_exact(4).map(|b| 16.0 * le_f32(b)));
    let packed = q
        .chunks_exact(cols)
        .flat_map(|row| {
            row.chunks(2)
                .map(|p| (p[0] as u8 & 0xF) | (p.get(1).map_or(0, |&h| h as u8 & 0xF) << 4))
                .collect::<Vec<u8>>()
        })
        .collect();
    [
        (q.iter().map(|&v| v as u8).collect(), s.clone()),
        (packed, s),
    ]
}

#[test]
fn int4_projections_equal_int8_projections_of_the_same_values() {
    for (ci, cfg) in all_configs().into_iter().enumerate() {
        let (d, h) = (cfg.d_model as usize, cfg.hidden as usize);
        let mut o8 = owned(cfg, 50 + ci as u64);
        let mut o4 = owned(cfg, 50 + ci as u64);
        for (b8, b4) in o8.blocks.iter_mut().zip(&mut o4.blocks) {
            for (i, (m8, m4)) in b8.m.iter_mut().zip(&mut b4.m).enumerate() {
                let cols = if i == 5 { h } else { d }; // w2 is [d][hidden]
                [*m8, *m4] = int4_pair(m8, cols);
            }
        }
        if let (Some(h8), Some(h4)) = (&mut o8.head, &mut o4.head) {
            [*h8, *h4] = int4_pair(h8, d);
        }
        let mut d4 = desc(&o4);
        for b in d4.blocks.as_mut_slice() {
            for m in [
                &mut b.wq, &mut b.wk, &mut b.wv, &mut b.wo, &mut b.w1, &mut b.w2,
            ] {
                m.weight_type = WeightType::Int4;
            }
            if let Some(w3) = &mut b.w3 {
                w3.weight_type = WeightType::Int4;
            }
        }
        if let Some(head) = &mut d4.lm_head {
            head.weight_type = WeightType::Int4;
        }
        let bytes4 = bytes_of(d4);
        let bytes8 = bytes_of(desc(&o8));
        assert!(bytes4.len() < bytes8.len());
        let m4 = GptModel::load(&bytes4).unwrap();
        let m8 = GptModel::load(&bytes8).unwrap();
        let (mut b4, mut b8) = (buffers(&m4), buffers(&m8));
        let mut s4 = m4.new_state(&mut b4.f, &mut b4.c).unwrap();
        let mut s8 = m8.new_state(&mut b8.f, &mut b8.c).unwrap();
        for (p, t) in [3u32, 0, 27, 28, 5, 5].into_iter().enumerate() {
            let l4 = m4.forward(&mut s4, t, p).unwrap().to_vec();
            let l8 = m8.forward(&mut s8, t, p).unwrap();
            assert!(
                l4.iter().zip(l8).all(|(a, b)| a.to_bits() == b.to_bits()),
                "config {ci}"
            );
            assert!(l4.iter().any(|&v| v != l4[0]));
        }
    }
}

#[test]
fn int4_matrices_are_checked() {
    let cfg = all_configs()[0];
    let o = owned(cfg, 9);
    let load = |edit: &dyn Fn(&mut GptDesc)| load_edited(desc(&o), edit);
    // An int8-length matrix declared int4.
    let e = load(&|d| edit_block(d, 0, |b| b.wq.weight_type = WeightType::Int4));
    assert!(
        matches!(
            e,
            Err(Error::GptLength {
                block: Some(0),
                what: msg!("wq.weights"),
                ..
            })
        ),
        "{e:?}"
    );
    // The embedding tables are int8 only.
    let e = load(&|d| d.tok_emb.weight_type = WeightType::Int4);
    assert_eq!(
        e,
        Err(Error::GptParameter {
            block: None,
            what: msg!("the embedding tables must be int8")
        })
    );
}

/// `m` (int8 rows of `cols`) in the offset-binary layout ([`WeightType::Int8Offset`]), written
/// here from the format's definition: even bytes `^ 0x80`, then `128 · Σ_{odd c} b_c` per row
/// as i32 LE.
fn offset_of(m: &(Vec<u8>, Vec<u8>), cols: usize) -> (Vec<u8>, Vec<u8>) {
    let mut w: Vec<u8> =
        m.0.iter()
            .enumerate()
            .map(|(i, &b)| {
                if (i % cols).is_multiple_of(2) {
                    b ^ 0x80
                } else {
                    b
                }
            })
            .collect();
    for row in m.0.chunks_exact(cols) {
        let odd: i32 = row.iter().skip(1).step_by(2).map(|&b| b as i8 as i32).sum();
        w.extend_from_slice(&(128 * odd).to_le_bytes());
    }
    (w, m.1.clone())
}

/// Every projection with `cols % 8 == 0`, and the head (untied, or the token table of a tied
/// one), as [`WeightType::Int8Offset`].
fn offset_model(cfg: GptConfig, seed: u64) -> (Owned, Vec<bool>) {
    let (d, h) = (cfg.d_model as usize, cfg.hidden as usize);
    let mut o = owned(cfg, seed);
    let mut converted = Vec::new();
    for b in &mut o.blocks {
        for (i, m) in b.m.iter_mut().enumerate() {
            let cols = if i == 5 { h } else { d }; // w2 is [d][hidden]
            let yes = cols.is_multiple_of(8);
            if yes {
                *m = offset_of(m, cols);
            }
            converted.push(yes);
        }
    }
    // The head: untied, or the token table of a tied one.
    match &mut o.head {
        Some(head) => *head = offset_of(head, d),
        None => o.tok = offset_of(&o.tok, d),
    }
    (o, converted)
}

/// The [`desc`] of an [`offset_model`]: its converted matrices marked `Int8Offset`.
fn offset_desc<'a>(o: &'a Owned, converted: &[bool]) -> GptDesc<'a> {
    let mut d = desc(o);
    let mut it = converted.iter();
    for b in d.blocks.as_mut_slice() {
        let mut ms: Vec<&mut QMatrix> = vec![
            &mut b.wq, &mut b.wk, &mut b.wv, &mut b.wo, &mut b.w1, &mut b.w2,
        ];
        if let Some(w3) = &mut b.w3 {
            ms.push(w3);
        }
        for m in ms {
            if *it.next().unwrap() {
                m.weight_type = WeightType::Int8Offset;
            }
        }
    }
    match &mut d.lm_head {
        Some(head) => head.weight_type = WeightType::Int8Offset,
        None => d.tok_emb.weight_type = WeightType::Int8Offset,
    }
    d
}

#[test]
fn offset_binary_projections_give_bit_identical_logits() {
    for (ci, cfg) in all_configs().into_iter().enumerate() {
        // hidden 12: w2 (12 columns) stays plain int8; hidden 16: every projection converted.
        for hidden in [12, 16] {
            let cfg = GptConfig { hidden, ..cfg };
            let seed = 70 + ci as u64;
            let o8 = owned(cfg, seed);
            let (oo, converted) = offset_model(cfg, seed);
            assert_eq!(converted.iter().all(|&c| c), hidden == 16);
            let bytes8 = bytes_of(desc(&o8));
            let bytes_o = bytes_of(offset_desc(&oo, &converted));
            assert!(bytes_o.len() > bytes8.len()); // the row constants
            let m8 = GptModel::load(&bytes8).unwrap();
            let mo = GptModel::load(&bytes_o).unwrap();
            let (mut b8, mut bo) = (buffers(&m8), buffers(&mo));
            let mut s8 = m8.new_state(&mut b8.f, &mut b8.c).unwrap();
            let mut so = mo.new_state(&mut bo.f, &mut bo.c).unwrap();
            for (p, t) in [3u32, 0, 27, 28, 5, 5].into_iter().enumerate() {
                let lo = mo.forward(&mut so, t, p).unwrap().to_vec();
                let l8 = m8.forward(&mut s8, t, p).unwrap();
                assert!(
                    lo.iter().zip(l8).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "config {ci} hidden {hidden} position {p}"
                );
                assert!(lo.iter().any(|&v| v != lo[0]));
            }
        }
    }
}

#[test]
fn offset_binary_matrices_are_checked() {
    let cfg = GptConfig {
        hidden: 16,
        tied_head: false,
        ..all_configs()[0]
    };
    let (o, converted) = offset_model(cfg, 11);
    assert!(GptModel::load(bytes_of(offset_desc(&o, &converted)).leak()).is_ok());
    let load = |edit: &dyn Fn(&mut GptDesc)| load_edited(offset_desc(&o, &converted), edit);
    let leak = |v: Vec<u8>| &*v.leak();
    // Missing row constants (a plain int8 matrix declared int8-offset).
    let plain = owned(cfg, 11);
    let wq8 = leak(plain.blocks[0].m[0].0.clone());
    let e = load(&|d| edit_block(d, 0, |b| b.wq.weights = wq8));
    assert!(
        matches!(
            e,
            Err(Error::GptLength {
                block: Some(0),
                what: msg!("wq.weights"),
                expected: 96, // 8 rows x (8 + 4)
                found: 64,
            })
        ),
        "{e:?}"
    );
    // One byte short.
    let short = leak(o.blocks[1].m[4].0[1..].to_vec());
    let e = load(&|d| edit_block(d, 1, |b| b.w1.weights = short));
    assert!(
        matches!(
            e,
            Err(Error::GptLength {
                block: Some(1),
                what: msg!("w1.weights"),
                ..
            })
        ),
        "{e:?}"
    );
    // A row constant off by one, and one that would be right for the plain bytes of a row
    // whose odd byte was changed (the stored constant no longer matches the row).
    let bad = msg!("an int8-offset row constant does not match its row");
    let mut w = o.blocks[0].m[3].0.clone();
    let n = w.len();
    w[n - 4] = w[n - 4].wrapping_add(1);
    let wo_bad = leak(w);
    let e = load(&|d| edit_block(d, 0, |b| b.wo.weights = wo_bad));
    assert_eq!(
        e,
        Err(Error::GptParameter {
            block: Some(0),
            what: bad
        })
    );
    let mut w = o.blocks[1].m[5].0.clone();
    w[3] ^= 0x01; // an odd byte of row 0 of w2
    let w2_bad = leak(w);
    let e = load(&|d| edit_block(d, 1, |b| b.w2.weights = w2_bad));
    assert_eq!(
        e,
        Err(Error::GptParameter {
            block: Some(1),
            what: bad
        })
    );
    // An even byte changed: the constant (odd bytes only) still matches, so it loads (and is a
    // different, valid weight).
    let mut w = o.blocks[1].m[5].0.clone();
    w[2] ^= 0x01;
    let w2_even = leak(w);
    assert!(load(&|d| edit_block(d, 1, |b| b.w2.weights = w2_even)).is_ok());
    // Columns not a multiple of 8: a hidden-12 model's w2 declared int8-offset (with constants
    // of the right length).
    let cfg12 = GptConfig { hidden: 12, ..cfg };
    let o12 = owned(cfg12, 12);
    let w2_12 = leak(offset_of(&o12.blocks[0].m[5], 12).0);
    let mut d12 = desc(&o12);
    edit_block(&mut d12, 0, |b| {
        b.w2.weights = w2_12;
        b.w2.weight_type = WeightType::Int8Offset;
    });
    assert_eq!(
        GptModel::load(bytes_of(d12).leak()).map(|_| ()),
        Err(Error::GptParameter {
            block: Some(0),
            what: msg!("int8-offset matrix columns not a multiple of 8")
        })
    );
    // The embedding tables are int8 rows, plain or offset-binary; never int4.
    let e = load(&|d| d.tok_emb.weight_type = WeightType::Int4);
    assert_eq!(
        e,
        Err(Error::GptParameter {
            block: None,
            what: msg!("the embedding tables must be int8")
        })
    );
    // An offset-binary table without its row constants.
    let e = load(&|d| d.tok_emb.weight_type = WeightType::Int8Offset);
    assert!(
        matches!(e, Err(Error::GptLength { block: None, .. })),
        "{e:?}"
    );
}

/// [`GptDesc::first_non_offset_matrix`] names the first matrix, in file order, that a fully
/// connected kernel multiplies and that is not int8-offset (the head last: `lm_head`, or the
/// token table when tied); the position table never counts.
#[test]
fn first_non_offset_matrix_names_the_first_plain_product() {
    for (ci, cfg) in all_configs().into_iter().enumerate() {
        // hidden 16: every projection's columns a multiple of 8.
        let (cfg, seed) = (GptConfig { hidden: 16, ..cfg }, 90 + ci as u64);
        let p = owned(cfg, seed); // the same values, plain int8
        let plain = bytes_of(desc(&p));
        let (o, converted) = offset_model(cfg, seed);
        let head = if cfg.tied_head {
            "tok_emb (the tied head)"
        } else {
            "lm_head"
        };
        // Every projection and the head offset-binary: none (the positions stay plain int8).
        let all = bytes_of(offset_desc(&o, &converted));
        // Block 1's w1 plain.
        let mut d = offset_desc(&o, &converted);
        edit_block(&mut d, 1, |b| {
            b.w1.weight_type = WeightType::Int8;
            b.w1.weights = &p.blocks[1].m[4].0;
        });
        let one = bytes_of(d);
        // Only the head plain.
        let mut d = offset_desc(&o, &converted);
        match (&mut d.lm_head, &p.head) {
            (Some(h), Some(ph)) => (h.weight_type, h.weights) = (WeightType::Int8, &ph.0[..]),
            _ => (d.tok_emb.weight_type, d.tok_emb.weights) = (WeightType::Int8, &p.tok.0[..]),
        }
        let last = bytes_of(d);
        let first = |b: &[u8]| {
            GptModel::load(b)
                .map(|m| m.desc().first_non_offset_matrix())
                .map_err(|e| std::format!("config {ci}: {e:?}"))
        };
        assert_eq!(first(&plain), Ok(Some((Some(0), "wq", WeightType::Int8))));
        assert_eq!(first(&all), Ok(None), "config {ci}");
        assert_eq!(first(&one), Ok(Some((Some(1), "w1", WeightType::Int8))));
        assert_eq!(first(&last), Ok(Some((None, head, WeightType::Int8))));
    }
}
