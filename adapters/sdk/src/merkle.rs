//! Merkle tree hashing as in RFC 9162 (Certificate Transparency 2.0, section 2.1),
//! which is RFC 6962's: the gateway's signed audit checkpoints carry the tree
//! head over the records they cover, and an inclusion proof shows that one
//! record is among them without handing over the others.
//!
//! - leaf hash: `SHA-256(0x00 || leaf bytes)`
//! - node hash: `SHA-256(0x01 || left || right)`
//! - the tree over `n > 1` leaves splits at `k`, the largest power of two below
//!   `n`: `MTH(D[0:n]) = node(MTH(D[0:k]), MTH(D[k:n]))`; the empty tree's hash
//!   is `SHA-256("")`.
//!
//! Building a root or a path costs `O(n)` hashes over the `n` leaves of one
//! checkpoint's batch; verifying a path costs `O(log n)`.

use aws_lc_rs::digest::{Context, SHA256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The hash of a leaf with these bytes.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(leaf);
    finish(ctx)
}

/// The hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx)
}

fn finish(ctx: Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash over these leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => finish(Context::new(&SHA256)),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index` (RFC 9162 `PATH(m, D[n])`), nearest sibling
/// first. `None` if `index` is outside the tree.
pub fn inclusion_path(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    path_into(leaves, index, &mut path);
    Some(path)
}

fn path_into(leaves: &[Hash], index: usize, path: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        path_into(&leaves[..k], index, path);
        path.push(root(&leaves[k..]));
    } else {
        path_into(&leaves[k..], index - k, path);
        path.push(root(&leaves[..k]));
    }
}

/// The root that an audit path leads to from a leaf (RFC 9162 section 2.1.3.2),
/// or `None` if the path cannot belong to leaf `index` of a tree of `size` leaves
/// (index out of range, too few or too many hashes).
pub fn root_from_path(leaf: &Hash, index: u64, size: u64, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn known_answers_from_rfc6962_test_vectors() {
        // The Certificate Transparency reference tests' leaves (hex) and roots.
        let inputs: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        let hashes: Vec<Hash> = inputs.iter().map(|l| leaf_hash(l)).collect();
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        for (n, want) in roots.iter().enumerate() {
            assert_eq!(hex::encode(root(&hashes[..=n])), *want, "tree of {}", n + 1);
        }
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // The reference audit path of leaf 0 in the tree of 8.
        let path: Vec<String> = inclusion_path(&hashes, 0)
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect();
        assert_eq!(
            path,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
    }

    #[test]
    fn every_path_of_every_small_tree_leads_to_its_root() {
        for n in 1..=33 {
            let l = leaves(n);
            let want = root(&l);
            for i in 0..n {
                let path = inclusion_path(&l, i).unwrap();
                let got = root_from_path(&l[i], i as u64, n as u64, &path);
                assert_eq!(got, Some(want), "leaf {i} of {n}");
            }
            assert!(inclusion_path(&l, n).is_none());
        }
    }

    #[test]
    fn a_wrong_leaf_index_size_or_path_does_not_reach_the_root() {
        let l = leaves(13);
        let want = root(&l);
        let path = inclusion_path(&l, 5).unwrap();
        // Another leaf with this path.
        assert_ne!(root_from_path(&l[6], 5, 13, &path), Some(want));
        // The right leaf claimed at another position.
        assert_ne!(root_from_path(&l[5], 4, 13, &path), Some(want));
        // A tree of another shape. (Sizes that give leaf 5 a path of the same shape,
        // 9 to 16 here, give the same root: the verifier takes the size from the
        // signed checkpoint, not from the proof.)
        assert_eq!(root_from_path(&l[5], 5, 6, &path), None);
        assert_eq!(root_from_path(&l[5], 5, 8, &path), None);
        // A path one hash short or one too long.
        assert_eq!(root_from_path(&l[5], 5, 13, &path[..path.len() - 1]), None);
        let mut long = path.clone();
        long.push(l[0]);
        assert_eq!(root_from_path(&l[5], 5, 13, &long), None);
        // A changed sibling.
        let mut changed = path;
        changed[1][0] ^= 1;
        assert_ne!(root_from_path(&l[5], 5, 13, &changed), Some(want));
        // Outside the tree.
        assert_eq!(root_from_path(&l[5], 13, 13, &[]), None);
    }
}
